"""common.evaluation.agree on generated result folders whose answers are known by construction."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.palette import write_label_png
from common.data.synthetic import make_davis_sample
from common.evaluation import agree
from common.evaluation.agree import compare
from common.runtime.errors import UserError, run_cli

H, W = 20, 30


def two_objects(shift: int = 0) -> np.ndarray:
    """Object 1: a 6x10 rectangle moved `shift` pixels right; object 2: a fixed 4x5 block."""
    labels = np.zeros((H, W), np.uint8)
    labels[2:8, 3 + shift:13 + shift] = 1
    labels[12:16, 20:25] = 2
    return labels


def write_folder(root: Path, frames: dict) -> Path:
    """frames: {sequence: [label map, ...]} written as DAVIS palette PNGs 00000.png, 00001.png, ..."""
    for seq, maps in frames.items():
        for t, labels in enumerate(maps):
            write_label_png(root / seq / f"{t:05d}.png", labels)
    return root


def test_identical_folders_agree_fully(tmp_path):
    maps = {"a": [two_objects()] * 3, "b": [two_objects(1)] * 2}
    result = compare(write_folder(tmp_path / "ours", maps), write_folder(tmp_path / "theirs", maps))
    assert [s.name for s in result.sequences] == ["a", "b"]
    assert result.mean_iou == 1.0
    assert result.identical_frame_share == 1.0 and result.identical_pixel_share == 1.0
    assert [o.object_id for _, o in result.objects] == [1, 2, 1, 2]
    assert result.worst(5) == []


def test_known_shift_gives_its_exact_iou(tmp_path):
    ours = write_folder(tmp_path / "ours", {"a": [two_objects(0), two_objects(0), two_objects(0)]})
    # frame 1 of theirs has object 1 moved 2 px: intersection 6*8, union 6*12 -> IoU 2/3 on that frame
    theirs = write_folder(tmp_path / "theirs", {"a": [two_objects(0), two_objects(2), two_objects(0)]})
    seq = compare(ours, theirs).sequences[0]
    obj1, obj2 = seq.objects
    assert (obj1.intersection, obj1.union) == (3 * 60 - 12, 3 * 60 + 12)  # pooled over the 3 frames
    assert obj1.iou == pytest.approx(168 / 192)
    assert obj2.iou == 1.0
    assert (seq.identical_frames, seq.frames) == (2, 3)
    assert seq.identical_pixels == 3 * H * W - 2 * 2 * 6  # 2 columns lost + 2 gained, 6 rows each


def test_csv_and_table(tmp_path, capsys):
    ours = write_folder(tmp_path / "ours", {"a": [two_objects(0)] * 3, "b": [two_objects(0)] * 3})
    theirs = write_folder(tmp_path / "theirs", {"a": [two_objects(0)] * 3, "b": [two_objects(2)] * 3})
    with pytest.raises(SystemExit) as exit_info:
        run_cli(agree.main, ["--ours", str(ours), "--theirs", str(theirs), "--csv-dir", str(tmp_path)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "mean IoU 0.9167" in out  # over the 4 (sequence, object) pairs: (1 + 1 + 2/3 + 1) / 4
    assert "bit-identical frames 3/6 (50.0%)" in out
    assert "worst sequences: b (IoU 0.8333, 0/3 frames identical)" in out
    rows = (tmp_path / "agreement.csv").read_text().splitlines()
    assert rows[0] == "sequence,object,frames,iou,identical_frames,identical_pixels"
    assert rows[3] == "b,1,3,0.666667,0,0.960000"


def _save(path: Path, labels: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P4":  # 4-bit palette PNG with a palette of its own (not the DAVIS colours)
        image = Image.fromarray(labels, "P")
        image.putpalette([0, 0, 0, 255, 255, 0, 0, 255, 255] + [7] * (3 * 253))
        image.save(path, bits=4)
    elif mode == "L":
        Image.fromarray(labels, "L").save(path)
    elif mode == "1":
        Image.fromarray(labels > 0).convert("1").save(path)


@pytest.mark.parametrize("mode, binary", [("P4", False), ("L", False), ("1", True)])
def test_palette_and_bit_depth_do_not_count(tmp_path, mode, binary):
    maps = [two_objects(0), two_objects(1)]
    if binary:
        maps = [(m > 0).astype(np.uint8) for m in maps]
    ours = write_folder(tmp_path / "ours", {"a": maps})
    for t, labels in enumerate(maps):
        _save(tmp_path / "theirs" / "a" / f"{t:05d}.png", labels, mode)
    bit_depth = (tmp_path / "theirs" / "a" / "00000.png").read_bytes()[24]  # in the IHDR chunk
    assert bit_depth == {"P4": 4, "L": 8, "1": 1}[mode]
    result = compare(ours, tmp_path / "theirs", binary=binary)
    assert result.mean_iou == 1.0 and result.identical_frame_share == 1.0


def test_different_folders_are_refused_before_reading(tmp_path):
    ours = write_folder(tmp_path / "ours", {"a": [two_objects()] * 2, "b": [two_objects()] * 2})
    theirs = write_folder(tmp_path / "theirs", {"a": [two_objects()] * 2})
    with pytest.raises(UserError, match=r"sequence b is in --ours .* but not in --theirs"):
        compare(ours, theirs)
    write_folder(theirs, {"b": [two_objects()] * 3})
    with pytest.raises(UserError, match=r"frame of sequence b: 00002.png is in --theirs"):
        compare(ours, theirs)
    (theirs / "b" / "00002.png").unlink()
    write_label_png(theirs / "b" / "00001.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(UserError, match=r"00001.png is 30x20 but .*00001.png is 30x21"):
        compare(ours, theirs)
    assert [s.name for s in compare(ours, theirs, only=["a"]).sequences] == ["a"]  # b is left alone
    with pytest.raises(UserError, match=r"sequence c is not in --ours"):
        compare(ours, theirs, only=["a", "c"])
    (ours / "empty").mkdir()
    (theirs / "empty").mkdir()
    with pytest.raises(UserError, match=r"sequence empty holds no PNG masks"):
        compare(ours, theirs, only=["empty"])
    with pytest.raises(UserError, match="--theirs folder not found"):
        compare(ours, tmp_path / "nothing")


def test_cli_with_davis_scores_both_sides(tmp_path, capsys):
    davis = make_davis_sample(tmp_path / "DAVIS", n_videos=2, n_frames=4, height=32, width=40)
    gt = davis / "Annotations" / "480p"
    for side in ("ours", "theirs"):
        for seq in ("synth-val-00", "synth-val-01"):
            shutil.copytree(gt / seq, tmp_path / side / seq)
    blank = np.zeros((32, 40), np.uint8)
    write_label_png(tmp_path / "theirs" / "synth-val-01" / "00001.png", blank)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(agree.main, ["--ours", str(tmp_path / "ours"), "--theirs", str(tmp_path / "theirs"),
                             "--davis", str(davis)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "J&F ours  J&F theirs" in out
    assert "J&F-Mean: ours 100.0, theirs" in out  # ours is the ground truth itself
    assert "worst sequences: synth-val-01" in out
    assert (tmp_path / "ours" / "agreement.csv").is_file()


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(agree.main, ["--ours", str(tmp_path / "x"), "--theirs", str(tmp_path / "y")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --ours folder not found")
