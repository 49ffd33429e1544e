"""What `vos.compare` writes: the table (Markdown and CSV), the J&F-vs-frames/s scatter plot and the grid video."""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from common.data.overlay import write_mp4

Row = Dict[str, Any]

# (key, title, format): rows without a key show '-'.
COLUMNS: Tuple[Tuple[str, str, str], ...] = (
    ("method", "method", "s"), ("fps", "frames/s", ".2f"), ("ms_per_frame", "ms/frame", ".1f"),
    ("peak_memory_mib", "peak memory (MiB)", ".0f"), ("J", "J", ".1f"), ("F", "F", ".1f"), ("JF", "J&F", ".1f"),
    ("published_JF", "published J&F", ".1f"),
)
LABELS = {"bmvos": "BMVOS", "emvos": "EMVOS", "tbd": "TBD", "hmmn": "HMMN"}


def _columns(rows: Sequence[Row]) -> List[Tuple[str, str, str]]:
    """Every column some row has (the score columns only with ground truth, published ones only on DAVIS)."""
    return [c for c in COLUMNS if c[0] == "method" or any(r.get(c[0]) is not None for r in rows)]


def _cell(row: Row, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    return LABELS.get(value, value) if key == "method" else format(value, fmt)


def markdown_table(rows: Sequence[Row]) -> str:
    columns = _columns(rows)
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |",
             "| " + " | ".join("---" if key == "method" else "---:" for key, _, _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(r, key, fmt) for key, _, fmt in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Row]) -> str:
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([title for _, title, _ in columns])
    for r in rows:
        writer.writerow([_cell(r, key, fmt) for key, _, fmt in columns])
    return buffer.getvalue()


def _minor_tick_label(value: float, _position: int) -> str:
    """Only the 2s and 5s of each decade are labelled, so that the labels do not overlap."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""


def scatter_plot(rows: Sequence[Row], path: Path, title: str) -> None:
    """J&F (y) against frames/s (x, log scale), one labelled point per method; a published J&F is drawn as a
    hollow marker at the method's measured speed and joined to ours."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    published_shown = False
    for i, r in enumerate(rows):
        color = colors[i % len(colors)]
        name = LABELS.get(r["method"], r["method"])
        ax.scatter([r["fps"]], [r["JF"]], s=60, color=color, zorder=3)
        # labels alternate above and below their points, so that neighbours do not overwrite each other
        ax.annotate(name, (r["fps"], r["JF"]), textcoords="offset points", xytext=(6, 5 if i % 2 == 0 else -13),
                    fontsize=9)
        if r.get("published_JF") is not None:
            ax.scatter([r["fps"]], [r["published_JF"]], s=60, facecolors="none", edgecolors=color, zorder=3,
                       label=None if published_shown else "published J&F (hollow)")
            ax.plot([r["fps"]] * 2, [r["JF"], r["published_JF"]], color=color, linestyle=":", linewidth=1)
            published_shown = True
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, not 10^-1
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_minor_tick_label))
    ax.set_xlabel("frames/s (log scale)")
    ax.set_ylabel("J&F (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.25, y=0.2)
    if published_shown:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def grid_shape(panels: int) -> Tuple[int, int]:
    """(rows, columns) of the most square grid holding `panels`."""
    cols = math.ceil(math.sqrt(panels))
    return math.ceil(panels / cols), cols


def labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """`panel` with `text` on a dark band in its top-left corner."""
    out = panel.copy()
    scale = max(0.4, panel.shape[0] / 480 * 0.9)
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, 0), (w + 8, h + base + 8), (0, 0, 0), thickness=-1)
    cv2.putText(out, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def grid_frames(panels_per_frame: Iterable[Sequence[np.ndarray]], names: Sequence[str]) -> Iterable[np.ndarray]:
    """One RGB grid per frame: the methods' panels, each labelled, row by row (empty cells black)."""
    rows, cols = grid_shape(len(names))
    for panels in panels_per_frame:
        h, w = panels[0].shape[:2]
        canvas = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
        for i, (panel, name) in enumerate(zip(panels, names)):
            r, c = divmod(i, cols)
            canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = labelled(panel, LABELS.get(name, name))
        yield canvas


def write_grid_video(panels_per_frame: Iterable[Sequence[np.ndarray]], names: Sequence[str], path: Path,
                     fps: float) -> Path:
    return write_mp4(grid_frames(panels_per_frame, names), path, fps=fps, prefer_ffmpeg=False)


def scores_percent(j: Optional[float], f: Optional[float]) -> Dict[str, Optional[float]]:
    """J, F and J&F in % from J, F in [0, 1] (None stays None)."""
    if j is None or f is None:
        return {"J": None, "F": None, "JF": None}
    return {"J": 100 * j, "F": 100 * f, "JF": 100 * (j + f) / 2}
