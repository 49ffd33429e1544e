"""Learning curves of a training stage: its per-step CSV log drawn as one PNG (PIL only, no plotting library).

`write_curves_png(csv_path, png_path)` draws two panels against the optimizer step: the training loss (each
step faint, a running mean bold) and the training IoU (running mean) with the validation score (J&F, dots).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

from common.data.output_folder import write_file_atomic

CSV_FIELDS = ["step", "epoch", "loss", "iou", "jf", "lr"]

_SIZE = (720, 520)
_MARGIN = (64, 16, 24, 40)  # left, right, top, bottom of each panel
_BLUE, _LIGHT_BLUE, _ORANGE, _GREEN, _GREY = (31, 119, 180), (174, 199, 232), (255, 127, 14), (44, 160, 44), (200,) * 3


def read_log(csv_path: Path) -> List[dict]:
    """The CSV rows with numbers (the empty `jf` of unvalidated steps as None)."""
    with open(csv_path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def running_mean(values: Sequence[float], window: int) -> List[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class _Panel:
    """A plot area with linear axes; `line`/`dots` take data coordinates."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: Tuple[int, int, int, int], x_range: Tuple[float, float],
                 y_range: Tuple[float, float], title: str, font) -> None:
        self.draw, self.box, self.font = draw, box, font
        left, top, right, bottom = box
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1
        draw.rectangle(box, outline=(0, 0, 0))
        draw.text((left, top - 14), title, fill=(0, 0, 0), font=font)
        for frac in (0.0, 0.5, 1.0):
            y = self.y0 + frac * (self.y1 - self.y0)
            py = self.py(y)
            draw.line([(left, py), (right, py)], fill=_GREY)
            draw.text((left - 58, py - 6), f"{y:.3g}", fill=(0, 0, 0), font=font)
            x = self.x0 + frac * (self.x1 - self.x0)
            draw.text((self.px(x) - 10, bottom + 4), f"{x:.4g}", fill=(0, 0, 0), font=font)

    def px(self, x: float) -> float:
        left, _, right, _ = self.box
        return left + (x - self.x0) / (self.x1 - self.x0) * (right - left)

    def py(self, y: float) -> float:
        _, top, _, bottom = self.box
        return bottom - (y - self.y0) / (self.y1 - self.y0) * (bottom - top)

    def line(self, xs: Sequence[float], ys: Sequence[float], colour, width: int = 1) -> None:
        points = [(self.px(x), self.py(y)) for x, y in zip(xs, ys)]
        if len(points) == 1:
            points = points * 2
        if points:
            self.draw.line(points, fill=colour, width=width)

    def dots(self, xs: Sequence[float], ys: Sequence[float], colour) -> None:
        for x, y in zip(xs, ys):
            cx, cy = self.px(x), self.py(y)
            self.draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)


def write_curves_png(csv_path: Path, png_path: Path, title: Optional[str] = None) -> Path:
    """Draw the log at `csv_path` into `png_path` (written atomically); returns `png_path`."""
    rows = read_log(csv_path)
    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    width, height = _SIZE
    left, right, top, bottom = _MARGIN
    half = height // 2
    steps = [r["step"] for r in rows]
    x_range = (min(steps, default=0.0), max(steps, default=1.0))
    window = max(1, len(rows) // 50)

    losses = [r["loss"] for r in rows]
    loss_panel = _Panel(draw, (left, top, width - right, half - bottom), x_range,
                        (0.0, max(losses, default=1.0)), f"{title + ': ' if title else ''}training loss "
                        f"(faint: per step, bold: running mean)", font)
    loss_panel.line(steps, losses, _LIGHT_BLUE)
    loss_panel.line(steps, running_mean(losses, window), _BLUE, width=2)

    score_panel = _Panel(draw, (left, half + top, width - right, height - bottom), x_range, (0.0, 1.0),
                         "training IoU (running mean, green) and validation J&F (orange dots)", font)
    score_panel.line(steps, running_mean([r["iou"] for r in rows], window), _GREEN, width=2)
    validated = [r for r in rows if r["jf"] is not None]
    score_panel.line([r["step"] for r in validated], [r["jf"] for r in validated], _ORANGE)
    score_panel.dots([r["step"] for r in validated], [r["jf"] for r in validated], _ORANGE)
    draw.text((width // 2 - 20, height - 16), "optimizer step", fill=(0, 0, 0), font=font)

    png_path = Path(png_path)
    write_file_atomic(png_path, lambda handle: image.save(handle, format="PNG"))
    return png_path
