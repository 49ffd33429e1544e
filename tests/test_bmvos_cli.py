"""`python -m bmvos.main_runfile` end to end on the synthetic DAVIS and YouTube-VOS samples, resume,
the bad-input errors, and the package's other entry points (`load_model`, `make_segmenter`, `reproduce`,
`run_demo`). Tiny frames, seeded weights saved as a checkpoint file."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from bmvos import main_runfile
from bmvos.model import BMVOS
from common.data import synthetic
from common.data.datasets import YouTubeVOS
from common.data.palette import read_label_png
from common.runtime.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("bmvos_cli")
    davis = synthetic.make_davis_sample(root / "DAVIS", n_videos=1, n_frames=3, height=32, width=48)
    # three videos: the third has an object entering on a later annotated frame
    ytvos = synthetic.make_ytvos_sample(root / "YTVOS", n_videos=3, n_frames=6, height=32, width=48)
    torch.manual_seed(0)
    weights = root / "seeded.pth"
    torch.save(BMVOS().state_dict(), weights)
    return {"root": root, "davis": davis, "ytvos": ytvos, "weights": weights}


def run(sample, out: Path, *extra: str) -> int:
    return main_runfile.main(["--davis", str(sample["davis"]), "--ytvos", str(sample["ytvos"]), "--output", str(out),
                              "--weights", str(sample["weights"]), "--device", "cpu", "--native-size",
                              "--eval-workers", "1", *extra])


def test_every_benchmark_end_to_end_then_resume(sample, capsys):
    out = sample["root"] / "out"
    assert run(sample, out, "--dataset", "DAVIS16_val,DAVIS17_val,DAVIS17_test-dev,YTVOS18_val") == 0
    text = capsys.readouterr().out
    assert "Global results for val" in text and "J&F-Mean" in text

    for name in ("davis16-val", "davis17-val"):  # <output>/<set>, the scheme of all five papers
        folder = out / name
        assert (folder / "global_results-val.csv").is_file()
        for video in ("synth-val-00",):
            pngs = sorted(p.name for p in (folder / video).glob("*.png"))
            assert pngs == ["00000.png", "00001.png", "00002.png"]
            labels = read_label_png(folder / video / "00001.png")
            assert labels.shape == (32, 48)
            assert set(labels.flatten().tolist()) <= ({0, 1} if name == "davis16-val" else {0, 1, 2})
    with zipfile.ZipFile(out / "davis17-test-dev.zip") as archive:
        assert sorted(archive.namelist()) == [f"synth-test-00/0000{i}.png" for i in range(3)]

    # YouTube-VOS: exactly the scored (valid/) frames, from each video's first annotated frame on
    videos = YouTubeVOS(sample["ytvos"]).videos()
    with zipfile.ZipFile(out / "ytvos18-valid.zip") as archive:
        names = set(archive.namelist())
    for video in videos:
        expected = {f"{video.frame_names[i]}.png" for i in video.scored_frames}
        assert {p.name for p in (out / "ytvos18-valid" / video.name).glob("*.png")} == expected
        assert {f"Annotations/{video.name}/{n}" for n in expected} <= names
    entering = [v for v in videos if len(v.mask_paths) > 1]
    assert entering, "the sample should have an object entering mid-video"
    for video in entering:
        for index, given in video.load_given_masks().items():
            written = read_label_png(out / "ytvos18-valid" / video.name / f"{video.frame_names[index]}.png")
            assert (written[given != 0] == given[given != 0]).all()

    # resume: a rerun skips every finished video and rewrites nothing
    png = out / "davis17-val" / "synth-val-00" / "00001.png"
    before = png.stat().st_mtime_ns
    assert run(sample, out, "--dataset", "DAVIS17_val") == 0
    assert "skipped 1 finished videos" in capsys.readouterr().out + capsys.readouterr().err
    assert png.stat().st_mtime_ns == before


def test_unknown_dataset_and_model_list_the_valid_ones(sample):
    with pytest.raises(UserError, match="DAVIS16_val, DAVIS17_val, DAVIS17_test-dev, YTVOS18_val"):
        run(sample, sample["root"] / "bad", "--dataset", "DAVIS18_val")
    with pytest.raises(UserError, match="davis, ytvos"):
        run(sample, sample["root"] / "bad", "--model", "kinetics")


def test_wrong_dataset_layout_is_named(sample, tmp_path):
    (tmp_path / "DAVIS" / "Annotations").mkdir(parents=True)
    with pytest.raises(UserError, match="JPEGImages"):
        main_runfile.main(["--davis", str(tmp_path / "DAVIS"), "--output", str(tmp_path / "out"),
                           "--weights", str(sample["weights"])])
    assert not (tmp_path / "out").exists()


def test_mismatching_checkpoint_names_the_first_key(sample, tmp_path, capsys):
    state = torch.load(sample["weights"], weights_only=True)
    state["vos.decoder.blend1.conv.weight"] = torch.zeros(256, 260, 3, 3)  # a TBD-sized tensor
    bad = tmp_path / "tbd_like.pth"
    torch.save(state, bad)
    with pytest.raises(UserError, match="vos.decoder.blend1.conv.weight"):
        main_runfile.main(["--davis", str(sample["davis"]), "--output", str(tmp_path / "out"),
                           "--weights", str(bad), "--native-size"])
    if not torch.cuda.is_available():  # no GPU: one-line notice, then CPU
        assert "no GPU found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_exit_status_and_message(sample, capsys):
    from common.runtime.errors import run_cli
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main_runfile.main, ["--dataset", "nope"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'nope'")


def test_reproduce_prints_ours_against_published(sample, capsys):
    from bmvos import reproduce
    out = sample["root"] / "reproduce"
    assert reproduce.main(["--davis", str(sample["davis"]), "--output", str(out), "--weights", str(sample["weights"]),
                           "--device", "cpu", "--native-size"]) == 0
    table = capsys.readouterr().out.split("BMVOS reproduction")[1]
    assert "DAVIS16_val" in table and "82.2" in table and "82.3" in table
    assert "DAVIS17_val" in table and "72.7" in table and "72.6" in table
    assert (out / "davis17-val" / "global_results-val.csv").is_file()


def test_load_model_sources(sample, monkeypatch, capsys):
    from bmvos import model as bmvos_model
    from bmvos.checkpoints import OFFICIAL_WEIGHTS

    cpu = torch.device("cpu")
    from_file = bmvos_model.load_model(str(sample["weights"]), cpu)
    assert f"weights: {sample['weights']}" in capsys.readouterr().out
    assert not from_file.training
    torch.testing.assert_close(from_file.state_dict(), torch.load(sample["weights"], weights_only=True))

    seeded = bmvos_model.load_model("seeded", cpu)
    assert "the numbers are not the paper's" in capsys.readouterr().out
    torch.testing.assert_close(seeded.state_dict(), from_file.state_dict())  # seed 0, as the sample's file

    asked = []
    real = bmvos_model.load_state_dict
    monkeypatch.setattr(bmvos_model, "load_state_dict",
                        lambda name: asked.append(name) or real(sample["weights"]))  # no download
    bmvos_model.load_model(None, cpu)
    assert asked == [OFFICIAL_WEIGHTS]


def test_make_segmenter_binds_weights_fast_mode_and_size(sample):
    from bmvos.fast import FastBMVOS
    from bmvos.inference import make_segmenter, segment_video
    from bmvos.model import load_model
    from common.data.datasets import DAVIS
    from common.inference.fast import FastOptions

    video = DAVIS(sample["davis"], 2017, "val").videos()[0]
    cpu = torch.device("cpu")
    expected = segment_video(FastBMVOS(load_model(str(sample["weights"]), cpu)), video, resize=False)
    segment = make_segmenter(str(sample["weights"]), cpu, fast=FastOptions(), resize=False)
    labels = segment(video)
    assert sorted(labels) == sorted(expected)
    for frame in labels:
        assert labels[frame].shape == (32, 48) and (labels[frame] == expected[frame]).all()


def test_run_demo_returns_the_davis_row(sample, tmp_path):
    from bmvos.demo import run_demo
    from common.evaluation.evaluate import GLOBAL_COLUMNS

    row = run_demo(sample["davis"], sample["ytvos"], tmp_path / "demo", torch.device("cpu"))
    assert list(row) == list(GLOBAL_COLUMNS) + ["weights"] and row["weights"] == "seeded"
    assert (tmp_path / "demo" / "davis17-val" / "global_results-val.csv").is_file()
    assert (tmp_path / "demo" / "ytvos18-valid.zip").is_file()
    # a checkpoint trained here (`make train-sample`'s best.pth) replaces the seeded weights, and says so
    row = run_demo(sample["davis"], None, tmp_path / "trained", torch.device("cpu"), trained=sample["weights"])
    assert row["weights"] == "trained here on generated data"
