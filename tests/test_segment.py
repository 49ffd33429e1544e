"""`vos.segment` and `vos.compare` on the generated sample with seeded weights.

Every method runs once through `vos.segment` from a frame folder; `vos.compare --gt` then reuses those
folders (no method runs twice). TBD also runs from an mp4 the test writes, with the mask on a later frame,
and through the DAVIS mode of `make compare`. The scores are checked against `common.evaluation.evaluate` on the same
PNGs, not against fixed numbers.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import pytest
from PIL import Image

from common.data import synthetic
from common.data.clip import read_mask
from common.data.palette import read_label_png, read_rgb
from common.evaluation.evaluate import evaluate
from common.runtime.errors import run_cli
from vos import compare, segment
from vos.papers import SEMI_SUPERVISED

FRAMES, HEIGHT, WIDTH = 4, 64, 128  # HMMN needs a 1/16 grid of at least 32 cells
VIDEO = "synth-val-00"
SEEDED_CPU = ["--weights", "seeded", "--native-size", "--device", "cpu"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return synthetic.make_davis_sample(tmp_path_factory.mktemp("clip") / "DAVIS", n_videos=1, n_frames=FRAMES,
                                       height=HEIGHT, width=WIDTH, n_objects=2, n_train=0, n_test_dev=0)


def frames_of(sample: Path) -> Path:
    return sample / "JPEGImages" / "480p" / VIDEO


def masks_of(sample: Path) -> Path:
    return sample / "Annotations" / "480p" / VIDEO


def video_frames(path: Path) -> List[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def compared(sample, tmp_path_factory, one_thread) -> Path:
    """Each method through `vos.segment` from the frame folder, then `vos.compare --gt` on the same out."""
    out = tmp_path_factory.mktemp("compare")
    for method in SEMI_SUPERVISED:
        assert segment.main(["--method", method, "--frames", str(frames_of(sample)),
                             "--mask", str(masks_of(sample) / "00000.png"), "--out", str(out / method),
                             *SEEDED_CPU]) == 0
    assert compare.main(["--frames", str(frames_of(sample)), "--mask", str(masks_of(sample) / "00000.png"),
                         "--gt", str(masks_of(sample)), "--out", str(out), *SEEDED_CPU]) == 0
    return out


def test_each_method_writes_a_palette_png_per_frame_and_an_overlay(compared, sample):
    given = read_label_png(masks_of(sample) / "00000.png")
    for method in SEMI_SUPERVISED:
        folder = compared / method
        pngs = sorted(folder.glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(FRAMES)], method
        labels = [read_label_png(p) for p in pngs]
        assert all(Image.open(p).mode == "P" for p in pngs)
        assert np.array_equal(labels[0], given), method  # the mask frame is the given mask
        assert all(set(np.unique(m).tolist()) <= {0, 1, 2} and m.shape == (HEIGHT, WIDTH) for m in labels)
        overlay = video_frames(folder / "overlay.mp4")
        assert len(overlay) == FRAMES and overlay[0].shape == (HEIGHT, WIDTH, 3)
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["method"] == method and stats["frames"] == FRAMES and stats["weights"] == "seeded"
        assert stats["fps"] > 0 and stats["peak_memory_mib"] > 0


def test_compare_table_plot_and_grid(compared, sample, tmp_path):
    with open(compared / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["method", "frames/s", "ms/frame", "peak memory (MiB)", "J", "F", "J&F"]
    assert [r["method"] for r in rows] == ["BMVOS", "EMVOS", "TBD", "HMMN"]
    markdown = (compared / "table.md").read_text().splitlines()
    assert markdown[0] == "| method | frames/s | ms/frame | peak memory (MiB) | J | F | J&F |" and len(markdown) == 6

    # The table's J&F is the DAVIS protocol's: common.evaluation.evaluate on the same PNGs gives the same number.
    for row, method in zip(rows, SEMI_SUPERVISED):
        results = tmp_path / method
        results.mkdir()
        (results / VIDEO).symlink_to(compared / method)
        scored = evaluate(sample, results, split="val", year=2017, workers=1, progress=False).global_row
        assert float(row["J"]) == pytest.approx(100 * scored["J-Mean"], abs=0.051), method
        assert float(row["F"]) == pytest.approx(100 * scored["F-Mean"], abs=0.051), method
        assert float(row["J&F"]) == pytest.approx(100 * scored["J&F-Mean"], abs=0.051), method

    plot = compared / "jf_vs_fps.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(plot) as image:
        assert image.width > 200 and image.height > 200
    grid = video_frames(compared / "grid.mp4")
    assert len(grid) == FRAMES and grid[0].shape == (2 * HEIGHT, 2 * WIDTH, 3)  # 2x2 panels


def test_a_finished_folder_is_reused_only_with_the_same_settings(compared, sample, capsys):
    args = ["--method", "tbd", "--frames", str(frames_of(sample)), "--mask", str(masks_of(sample) / "00000.png"),
            "--out", str(compared / "tbd"), *SEEDED_CPU]
    before = (compared / "tbd" / "stats.json").stat().st_mtime_ns
    assert segment.main(args) == 0
    assert "is finished" in capsys.readouterr().out
    assert (compared / "tbd" / "stats.json").stat().st_mtime_ns == before
    assert_user_error(capsys, segment.main, args + ["--fast"], "made with other settings (fast)")


def test_mp4_input_with_the_mask_on_a_later_frame(sample, tmp_path, one_thread):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 12, (WIDTH, HEIGHT))
    for path in sorted(frames_of(sample).glob("*.jpg")):
        writer.write(cv2.cvtColor(read_rgb(path), cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert segment.main(["--method", "tbd", "--video", str(clip), "--mask", str(masks_of(sample) / "00001.png"),
                         "--mask-frame", "1", "--out", str(out), *SEEDED_CPU]) == 0
    labels = [read_label_png(out / f"{i:05d}.png") for i in range(FRAMES)]
    assert not labels[0].any()  # before the mask frame: background
    assert np.array_equal(labels[1], read_label_png(masks_of(sample) / "00001.png"))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames"] == FRAMES - 1 and stats["mask_frame"] == 1
    assert len(video_frames(out / "overlay.mp4")) == FRAMES


def test_binary_masks_are_one_object_and_palette_void_is_background(tmp_path):
    binary = np.zeros((8, 8), dtype=np.uint8)
    binary[2:5, 2:5] = 255
    Image.fromarray(binary, mode="L").save(tmp_path / "binary.png")
    assert np.array_equal(read_mask(tmp_path / "binary.png"), (binary == 255).astype(np.uint8))
    palette = binary.copy()
    palette[0, :] = 3
    Image.fromarray(palette, mode="L").save(tmp_path / "palette.png")
    expected = np.where(palette == 255, 0, palette)
    assert np.array_equal(read_mask(tmp_path / "palette.png"), expected)


def assert_user_error(capsys, main, argv: List[str], expected: str, out: Optional[Path] = None) -> None:
    """Exit status 2, exactly one `error:` line on stderr mentioning `expected`, and no result folder."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    if out is not None:
        assert not out.exists() and not any(out.parent.glob(f".tmp-{out.name}"))


def test_bad_input_is_one_error_line_and_nothing_written(sample, tmp_path, capsys):
    out = tmp_path / "out"
    mask = str(masks_of(sample) / "00000.png")
    common = ["--method", "tbd", "--out", str(out), *SEEDED_CPU]

    small = tmp_path / "small.png"
    Image.fromarray(np.ones((HEIGHT // 2, WIDTH // 2), dtype=np.uint8), mode="L").save(small)
    assert_user_error(capsys, segment.main, ["--frames", str(frames_of(sample)), "--mask", str(small), *common],
                      f"is {WIDTH // 2}x{HEIGHT // 2} but the frames are {WIDTH}x{HEIGHT}", out)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(capsys, segment.main, ["--frames", str(empty), "--mask", mask, *common], f"--frames folder {empty} holds no images", out)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    assert_user_error(capsys, segment.main, ["--video", str(broken), "--mask", mask, *common],
                      "cannot decode any frame", out)
    assert_user_error(capsys, segment.main, ["--frames", str(frames_of(sample)), "--mask",
                                             str(tmp_path / "missing.png"), *common], "mask not found", out)
    assert_user_error(capsys, compare.main, ["--frames", str(frames_of(sample)), "--mask", mask, "--gt", str(empty),
                                             "--out", str(out), *SEEDED_CPU], f"--gt folder {empty} holds no images", out)
    assert_user_error(capsys, compare.main, ["--frames", str(frames_of(sample)), "--mask", mask,
                                             "--methods", "tbd,gis", "--out", str(out)], "--methods takes", out)


def test_davis_mode_scores_the_set_against_the_published_numbers(sample, tmp_path):
    """`make compare` on the sample: seeded results kept apart from the official folders, published J&F in the table."""
    out = tmp_path / "davis"
    assert compare.main(["--davis", str(sample), "--methods", "tbd", "--results", str(tmp_path / "official"),
                         "--out", str(out), *SEEDED_CPU]) == 0
    results = out / "seeded-results" / "tbd" / "davis17-val"
    assert sorted(p.name for p in (results / VIDEO).glob("*.png")) == [f"{i:05d}.png" for i in range(FRAMES)]
    assert not (tmp_path / "official").exists()
    with open(out / "table.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert list(row) == ["method", "frames/s", "ms/frame", "peak memory (MiB)", "J", "F", "J&F", "published J&F"]
    assert row["method"] == "TBD" and row["published J&F"] == "80.0"  # tbd/reproduce.py's DAVIS17 val number
    scored = evaluate(sample, results, split="val", year=2017, workers=1, progress=False).global_row
    assert float(row["J&F"]) == pytest.approx(100 * scored["J&F-Mean"], abs=0.051)
    assert (out / "jf_vs_fps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_with_the_models_trained_here(sample, tmp_path, capsys):
    """`--weights trained`: each method's `make train-sample` checkpoint, checked before any method runs, passed
    to its `vos.segment` and recorded with its results."""
    import torch

    from tbd.model import TBD

    trained = tmp_path / "train-sample"
    mask = str(masks_of(sample) / "00000.png")
    clip = ["--frames", str(frames_of(sample)), "--mask", mask, "--native-size", "--device", "cpu"]
    out = tmp_path / "out"
    assert_user_error(capsys, compare.main, [*clip, "--methods", "tbd", "--weights", "trained", "--trained",
                                             str(trained), "--out", str(out)],
                      f"{trained / 'tbd' / 'best.pth'} not found; train it with `make train-sample PAPER=tbd`", out)
    (trained / "tbd").mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(TBD().state_dict(), trained / "tbd" / "best.pth")
    assert compare.main([*clip, "--methods", "tbd", "--weights", "trained", "--trained", str(trained), "--gt",
                         str(masks_of(sample)), "--out", str(out)]) == 0
    stats = json.loads((out / "tbd" / "stats.json").read_text())
    assert stats["weights"] == str(trained / "tbd" / "best.pth")
    assert (out / "jf_vs_fps.png").is_file()
    davis = ["--davis", str(sample), "--methods", "tbd", "--weights", "trained", "--trained", str(trained),
             "--native-size", "--device", "cpu", "--out", str(tmp_path / "davis")]
    assert compare.main(davis) == 0

    # trained again into the same path: neither mode passes the old model's results off as the new one's
    torch.manual_seed(4)
    torch.save(TBD().state_dict(), trained / "tbd" / "best.pth")
    assert_user_error(capsys, compare.main, [*clip, "--methods", "tbd", "--weights", "trained", "--trained",
                                             str(trained), "--out", str(out)], "other settings (weights_sha256)")
    assert_user_error(capsys, compare.main, davis, "segmented with other weights than")
    assert compare.main([*davis, "--overwrite"]) == 0
    made_with = json.loads((tmp_path / "davis" / "trained-results" / "tbd" / "made_with.json").read_text())
    assert made_with["weights_sha256"] == hashlib.sha256((trained / "tbd" / "best.pth").read_bytes()).hexdigest()
