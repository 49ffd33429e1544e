"""EMVOS end to end on the synthetic sample: both training stages (CPU, tiny crops), resume, then --test."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from common.data.synthetic import make_coco_sample, make_davis_sample
from common.runtime.errors import UserError
from emvos.run import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("emvos_data")
    return {"coco": make_coco_sample(root / "COCO", n_images=2, height=48, width=64),
            "davis": make_davis_sample(root / "DAVIS", n_videos=1, n_frames=4, height=48, width=64, n_train=1,
                                       n_test_dev=1)}


def train_args(roots: dict, out: Path, epochs: int) -> list:
    return ["--train", "--coco", str(roots["coco"]), "--davis", str(roots["davis"]), "--stages", "coco,davis",
            "--output-dir", str(out), "--init", "scratch", "--device", "cpu", "--workers", "0",
            "--epochs", str(epochs), "--batch-size", "2", "--clips-per-epoch", "2", "--save-step", "1",
            "--val-step", "2", "--crop", "32", "--short-side", "48", "--min-fg-pixels", "8",
            "--coco-clip-length", "3", "--video-clip-length", "3"]


def log_epochs(path: Path) -> list:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def test_train_resume_then_test(roots, tmp_path):
    ckpt = tmp_path / "ckpt"
    main(train_args(roots, ckpt, epochs=1))
    for stage in ("coco", "coco_davis"):
        assert (ckpt / f"{stage}_0001.pth").is_file() and (ckpt / f"{stage}_last.pth").is_file()
    with pytest.raises(UserError, match="--resume"):
        main(train_args(roots, ckpt, epochs=2))

    main(train_args(roots, ckpt, epochs=2) + ["--resume"])  # one more epoch per stage, validated at epoch 2
    for stage in ("coco", "coco_davis"):
        assert log_epochs(ckpt / f"{stage}_log.jsonl") == [1, 2]
        last = torch.load(ckpt / f"{stage}_last.pth", weights_only=True)
        assert last["epoch"] == 2 and last["optimizer"]["state"]  # Adam moments came back and went on
    scores = [json.loads(line)["score"] for line in (ckpt / "coco_davis_log.jsonl").read_text().splitlines()]
    assert scores[0] is None and 0.0 <= scores[1] <= 1.0

    out = tmp_path / "results"
    main(["--test", "--davis", str(roots["davis"]), "--sets", "davis17-val", "davis17-test-dev",
          "--weights", str(ckpt / "coco_davis_0002.pth"), "--output", str(out), "--device", "cpu", "--no-resize"])
    assert sorted(p.name for p in (out / "davis17-val" / "synth-val-00").iterdir()) == [
        f"{i:05d}.png" for i in range(4)]
    # the J&F CSVs beside the masks, where davis2017-evaluation writes them
    assert sorted(p.name for p in (out / "davis17-val").glob("*.csv")) == [
        "global_results-val.csv", "per-sequence_results-val.csv"]
    with zipfile.ZipFile(out / "davis17-test-dev.zip") as archive:
        assert "synth-test-00/00003.png" in archive.namelist()


def test_bad_inputs(roots, tmp_path):
    with pytest.raises(UserError, match="--coco"):
        main(["--train", "--stages", "coco", "--init", "scratch", "--output-dir", str(tmp_path)])
    with pytest.raises(UserError, match="COCO root"):
        main(["--train", "--stages", "coco", "--coco", str(tmp_path / "missing"), "--init", "scratch",
              "--output-dir", str(tmp_path)])
    with pytest.raises(UserError, match="unknown training stage"):
        main(["--train", "--stages", "kinetics", "--init", "scratch", "--output-dir", str(tmp_path)])
    with pytest.raises(UserError, match="--davis"):
        main(["--test"])
