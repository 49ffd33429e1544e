"""Bad input to the three training command lines (issue 24's training rows, issue 21's unusable data): one clear
error before anything trains, and nothing that claims a checkpoint which does not exist."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bmvos.train import main as bmvos_main
from common.data.synthetic import make_coco_sample
from common.runtime.errors import UserError
from common.training import TBD_COCO, COCOClips, TrainConfig, Trainer
from emvos.run import main as emvos_main
from tbd.run import main as tbd_main

pytestmark = pytest.mark.usefixtures("one_thread")

CLIS = {"bmvos": (bmvos_main, []), "emvos": (emvos_main, ["--train"]), "tbd": (tbd_main, ["--train"])}
TINY = ["--init", "scratch", "--device", "cpu", "--workers", "0", "--stages", "coco", "--epochs", "1",
        "--batch-size", "2", "--clips-per-epoch", "2", "--crop", "32", "--short-side", "48", "--coco-clip-length", "2",
        "--min-fg-pixels", "8", "--no-swap-attach"]


def run(paper: str, args: list):
    main, prefix = CLIS[paper]
    return main(prefix + args)


@pytest.mark.parametrize("paper", list(CLIS))
@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--batch-size", "-2"), ("--epochs", "0"),
                                         ("--crop", "0"), ("--video-clip-length", "1"), ("--lr", "0"),
                                         ("--workers", "-1")])
def test_schedule_values_refused_while_parsing(paper, flag, value, capsys, tmp_path):
    # --epochs 0 used to print "stage checkpoint: .../coco_last.pth", a file that was never written
    with pytest.raises(SystemExit) as exit_:
        run(paper, ["--coco", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out"), flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco_sample(tmp_path_factory.mktemp("coco") / "COCO", n_images=2, height=48, width=64)


@pytest.mark.parametrize("paper", list(CLIS))
def test_resume_with_nothing_to_resume(paper, coco, tmp_path):
    out = tmp_path / "empty"
    with pytest.raises(UserError, match=f"nothing to resume in {out}"):
        run(paper, TINY + ["--coco", str(coco), "--output-dir", str(out), "--resume"])
    # and before the model is built: no ImageNet download for a run that cannot start
    with pytest.raises(UserError, match="nothing to resume"):
        run(paper, TINY + ["--coco", str(coco), "--output-dir", str(out), "--resume", "--init", "imagenet"])
    assert not out.exists()


def test_rgb_coco_mask_is_refused(coco, tmp_path):
    import shutil

    bad = tmp_path / "COCO"
    shutil.copytree(coco, bad)
    mask_path = sorted((bad / "Annotations").iterdir())[1]
    Image.open(mask_path).convert("RGB").save(mask_path)  # what an image editor's "save as PNG" may do
    with pytest.raises(UserError, match=f"training mask {mask_path} has image mode RGB"):
        run("tbd", TINY + ["--coco", str(bad), "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_dataset_without_usable_clips(coco, tmp_path, capsys):
    import shutil

    empty = tmp_path / "COCO"
    shutil.copytree(coco, empty)
    for mask_path in (empty / "Annotations").iterdir():  # every annotation all background
        Image.fromarray(np.zeros((48, 64), np.uint8), mode="L").save(mask_path)
    with pytest.raises(UserError, match="no usable clips"):
        run("tbd", TINY + ["--coco", str(empty), "--output-dir", str(tmp_path / "out"), "--epochs", "50"])
    assert not list((tmp_path / "out").glob("*.pth"))


class _Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        raise UserError("training mask /x/y.png is unreadable")


def test_worker_error_stays_one_line(tmp_path):
    """A UserError raised inside a DataLoader worker is reported with its own line, not the worker's traceback."""
    config = TrainConfig(save_name="w", epochs=1, batch_size=2, save_step=1, val_step=1, num_workers=1)
    trainer = Trainer(torch.nn.Conv2d(3, 2, 1), lambda m, i, k: None, _Broken(), config, tmp_path, torch.device("cpu"))
    with pytest.raises(UserError) as err:
        trainer.train()
    assert str(err.value) == "training mask /x/y.png is unreadable"


def test_coco_clips_refuse_rgb_masks_up_front(coco, tmp_path):
    import shutil

    bad = tmp_path / "COCO"
    shutil.copytree(coco, bad)
    mask_path = sorted((bad / "Annotations").iterdir())[0]
    Image.open(mask_path).convert("RGB").save(mask_path)
    with pytest.raises(UserError, match="image mode RGB"):
        COCOClips(bad, TBD_COCO)
