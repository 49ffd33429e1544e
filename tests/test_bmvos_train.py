"""BMVOS training through the shared trainer: a two-stage smoke run (COCO, then DAVIS) on the synthetic
samples at toy sizes, its checkpoints, and resume."""
from __future__ import annotations

import pytest
import torch

from bmvos import main_runfile, train
from bmvos.model import BMVOS
from common.data import synthetic
from common.runtime.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_stage_smoke_run_and_resume(tmp_path, capsys):
    davis = synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=32, width=48)
    coco = synthetic.make_coco_sample(tmp_path / "COCO", n_images=2, height=32, width=48)
    out = tmp_path / "ckpt"
    argv = ["--train", "--coco", str(coco), "--davis", str(davis), "--stages", "coco,davis",
            "--output-dir", str(out), "--init", "scratch", "--device", "cpu", "--workers", "0",
            "--epochs", "1", "--batch-size", "2", "--clips-per-epoch", "2", "--save-step", "1", "--val-step", "1",
            "--crop", "32", "--coco-clip-length", "3", "--video-clip-length", "3", "--min-fg-pixels", "8",
            "--no-swap-attach"]
    assert main_runfile.main(argv) == 0
    for name in ("coco_0001.pth", "coco_last.pth", "coco_davis_0001.pth", "coco_davis_last.pth"):
        assert (out / name).is_file(), name
    model = BMVOS()
    model.load_state_dict(torch.load(out / "coco_davis_0001.pth", weights_only=True))  # official layout
    capsys.readouterr()

    assert main_runfile.main(argv + ["--resume"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_unknown_stage_is_refused():
    with pytest.raises(UserError, match="coco, davis, ytvos"):
        train.main(["--stages", "coco,kinetics", "--init", "scratch"])
