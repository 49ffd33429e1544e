"""TBD beyond the parity fixtures: video bookkeeping, training smoke run + test run, CLI errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.data import synthetic
from common.runtime.errors import UserError
from tbd.model import TBD, distance_matrix

pytestmark = pytest.mark.usefixtures("one_thread")  # results stay within the tolerances


@pytest.fixture(scope="module")
def model() -> TBD:
    torch.manual_seed(0)
    return TBD().eval()


def test_distance_matrix_is_cached_per_size_and_device():
    a = distance_matrix(89, 147)
    assert a is distance_matrix(96, 160)  # same 6x10 grid
    assert a.shape == (60, 60) and a.dtype == torch.float32
    assert a[0, 11].item() == pytest.approx(2 ** 0.5)  # cell (0,0) to cell (1,1), row-major
    assert distance_matrix(96, 96).shape == (36, 36)


def test_objects_entering_mid_video_and_output_frames(model):
    torch.manual_seed(1)
    imgs = torch.rand(1, 6, 3, 40, 56)
    first = torch.zeros(1, 1, 40, 56, dtype=torch.long)
    first[..., 5:20, 5:20] = 1
    later = torch.zeros(1, 1, 40, 56, dtype=torch.long)
    later[..., 20:35, 30:50] = 3
    given = [first, None, None, later, None, None]
    with torch.no_grad():
        masks = model(imgs, given, None, [0, 3, 5])["masks"]
    # frame 0, the given frame 3 and the listed frame 5; padded 48x64 internally, cropped back
    assert masks.shape == (1, 3, 1, 40, 56)
    assert torch.equal(masks[0, 0], first[0])
    assert torch.equal(masks[0, 1][later[0] != 0], later[0][later[0] != 0])
    assert set(masks.unique().tolist()) <= {0, 1, 3}


def test_training_path_returns_last_object_scores(model):
    from tbd.train import tbd_forward_clip

    imgs = torch.rand(2, 3, 3, 32, 48)
    masks = torch.zeros(2, 3, 1, 32, 48, dtype=torch.long)
    masks[:, :, :, 8:24, 8:30] = 1
    scores = tbd_forward_clip(model, imgs, masks)
    assert scores.shape == (2, 2, 2, 32, 48) and scores.requires_grad


def test_train_smoke_then_test_run(tmp_path: Path):
    """Both official stages (COCO, then DAVIS with validation) for one tiny epoch, then --test on the result."""
    from tbd.run import main

    data = synthetic.make_sample(tmp_path / "data", n_videos=1, n_frames=4, height=48, width=64, coco_images=2)
    ckpt = tmp_path / "ckpt"
    common = ["--device", "cpu"]
    main(["--train", "--coco", str(data["coco"]), "--davis", str(data["davis"]), "--output-dir", str(ckpt),
          "--init", "scratch", "--epochs", "1", "--batch-size", "2", "--clips-per-epoch", "2", "--save-step", "1",
          "--val-step", "2", "--crop", "48", "--coco-clip-length", "3", "--video-clip-length", "3",
          "--min-fg-pixels", "16", "--workers", "0"] + common)
    for name in ("coco_0001.pth", "coco_last.pth", "coco_davis_0001.pth", "coco_davis_last.pth"):
        assert (ckpt / name).is_file(), name
    weights = ckpt / "coco_davis_0001.pth"
    out = tmp_path / "out"
    main(["--test", "--davis", str(data["davis"]), "--sets", "davis17-val", "--weights", str(weights),
          "--output", str(out), "--no-resize"] + common)
    pngs = sorted((out / "davis17-val").rglob("*.png"))
    assert len(pngs) == 4
    assert list((out / "davis17-val").glob("*.csv"))  # the J&F tables beside the masks

    # Resume: a rerun of the finished stages only reloads them.
    main(["--train", "--coco", str(data["coco"]), "--davis", str(data["davis"]), "--output-dir", str(ckpt),
          "--init", "scratch", "--epochs", "1", "--crop", "48", "--workers", "0", "--resume", "--val-step", "1",
          "--coco-clip-length", "3", "--video-clip-length", "3"] + common)


def test_cli_errors_are_one_line(tmp_path: Path):
    from tbd.run import main

    with pytest.raises(UserError, match="--davis"):
        main(["--test", "--sets", "davis17-val", "--weights", str(tmp_path / "x.pth")])
    # the dataset layout is checked before any weights are loaded (or downloaded)
    with pytest.raises(UserError, match="DAVIS frames folder not found"):
        main(["--test", "--davis", str(tmp_path), "--sets", "davis17-val", "--weights", str(tmp_path / "x.pth"),
              "--device", "cpu"])
    davis = synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=2, height=32, width=32)
    with pytest.raises(UserError, match="no checkpoint file"):
        main(["--test", "--davis", str(davis), "--sets", "davis17-val", "--weights", str(tmp_path / "x.pth"),
              "--device", "cpu"])
    with pytest.raises(UserError, match="needs its dataset root"):
        main(["--train", "--stages", "coco", "--init", "scratch", "--device", "cpu"])
    with pytest.raises(UserError, match="unknown training stage 'kinetics'; choose from coco, davis, ytvos"):
        main(["--train", "--stages", "coco,kinetics", "--init", "scratch", "--device", "cpu"])


def test_ytvos_custom_split_training(tmp_path: Path):
    """YouTube-VOS stage on the authors' split files (cho_train / cho_val) with cho_val validation."""
    import shutil

    from tbd.run import main

    davis = synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=4, height=48, width=64,
                                        n_train=2)
    ytvos = tmp_path / "YTVOS18"
    names = []
    for video in sorted((davis / "JPEGImages" / "480p").iterdir()):
        if video.name.startswith("synth-train") or video.name.startswith("synth-val"):
            names.append(video.name)
            shutil.copytree(video, ytvos / "train" / "JPEGImages" / video.name)
            shutil.copytree(davis / "Annotations" / "480p" / video.name, ytvos / "train" / "Annotations" / video.name)
    lists = tmp_path / "split"
    lists.mkdir()
    (lists / "train.txt").write_text("\n".join(n for n in names if "train" in n) + "\n")
    (lists / "val.txt").write_text("\n".join(n for n in names if "val" in n) + "\n")
    ckpt = tmp_path / "ckpt"
    main(["--train", "--stages", "ytvos", "--ytvos", str(ytvos), "--ytvos-train-list", str(lists / "train.txt"),
          "--ytvos-val-list", str(lists / "val.txt"), "--output-dir", str(ckpt), "--init", "scratch",
          "--epochs", "1", "--batch-size", "2", "--clips-per-epoch", "2", "--save-step", "1", "--val-step", "1",
          "--crop", "48", "--short-side", "48", "--video-clip-length", "3", "--min-fg-pixels", "16",
          "--workers", "0", "--device", "cpu"])
    assert (ckpt / "ytvos_0001.pth").is_file()
    log = (ckpt / "ytvos_log.jsonl").read_text()
    assert '"score": null' not in log  # validated on cho_val

    with pytest.raises(UserError, match="video list not found"):
        main(["--train", "--stages", "ytvos", "--ytvos", str(ytvos), "--ytvos-train-list", str(lists / "nope.txt"),
              "--output-dir", str(tmp_path / "c2"), "--init", "scratch", "--device", "cpu"])


def test_reproduce_table_lists_published_numbers():
    from tbd.reproduce import PUBLISHED, PUBLISHED_WITHOUT_COCO, format_table

    assert PUBLISHED["davis17-val"] == 80.0 and set(PUBLISHED_WITHOUT_COCO) == set(PUBLISHED)
    table = format_table({"davis17-val": 79.5}, {"davis17-test-dev": "x.zip"})
    assert "80.0" in table and "-0.5" in table and "server" in table and "77.8" in table


def test_load_model_and_segmenter(tmp_path: Path, capsys, monkeypatch):
    """`load_model` names: None is the official checkpoint, "seeded" the seeded initialisation with its notice;
    `make_segmenter` binds the model (faithful or fast) and its settings; `segment_video` runs where the model
    is."""
    import tbd.model
    from common.data.datasets import DAVIS
    from common.inference.fast import FastOptions
    from tbd.inference import make_segmenter, segment_video
    from tbd.model import load_model

    seeded = load_model("seeded", torch.device("cpu"))
    assert isinstance(seeded, TBD) and not seeded.training
    assert "--weights seeded" in capsys.readouterr().out
    with monkeypatch.context() as patch:  # None: the official weights (not fetched here)
        patch.setattr(tbd.model, "build_with_weights", lambda build, weights, device, paper: weights)
        assert load_model(None, torch.device("cpu")) == "tbd-davis"

    davis = synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=32, width=48,
                                        n_train=0, n_test_dev=0)
    video = DAVIS(davis, year=2017, split="val").videos()[0]
    faithful = segment_video(seeded, video, resize=False)
    assert sorted(faithful) == [0, 1, 2] and faithful[0].shape == (32, 48)
    for fast in (None, FastOptions()):
        labels = make_segmenter("seeded", torch.device("cpu"), fast=fast, resize=False)(video)
        assert sorted(labels) == [0, 1, 2]
        assert all(labels[i].shape == (32, 48) and labels[i].dtype == faithful[i].dtype for i in labels)
