"""`python -m hmmn.eval_davis` end to end on tiny synthetic DAVIS / YouTube-VOS trees (seeded weights), and the
contract's `segment_video` / `make_segmenter` on one of their videos.

Frames are 64x128, the smallest size HMMN accepts (its 1/16 grid needs 32 cells for the top-32).
"""
from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.data.datasets import DAVIS
from common.data.palette import read_label_png, write_label_png
from common.data.synthetic import make_davis_sample, make_ytvos_sample
from common.runtime.errors import UserError
from hmmn import eval_davis
from hmmn.inference import LazyFrames, make_segmenter, segment_video, track
from hmmn.model import HMMN, load_model

H, W = 64, 128


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hmmn_data")
    torch.manual_seed(0)
    weights = root / "HMMN_weights.pth"
    # As the official file: saved from nn.DataParallel, so every key carries `module.`.
    torch.save({f"module.{k}": v for k, v in HMMN().state_dict().items()}, weights)
    return {
        "davis": make_davis_sample(root / "DAVIS", n_videos=1, n_frames=4, height=H, width=W,
                                   n_train=1, n_test_dev=1),
        "ytvos": make_ytvos_sample(root / "YouTubeVOS", n_videos=3, n_frames=6, height=H, width=W),
        "weights": weights,
    }


def run(data, tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "out"
    code = eval_davis.main([*args, "--weights", str(data["weights"]), "--output", str(out), "--device", "cpu"])
    assert code == 0
    return out


def test_davis17_writes_pngs_scores_and_viz(data, tmp_path, capsys) -> None:
    viz = tmp_path / "viz"
    out = run(data, tmp_path, "-s", "val", "-y", "17", "-D", str(data["davis"]), "-viz", "--viz-dir", str(viz))
    pngs = sorted((out / "synth-val-00").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(4)]
    first = read_label_png(pngs[0])
    assert np.array_equal(first, read_label_png(data["davis"] / "Annotations/480p/synth-val-00/00000.png"))
    assert all(read_label_png(p).shape == (H, W) and read_label_png(p).max() <= 2 for p in pngs)
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and "synth-val-00_2" in printed and "peak memory" in printed
    assert (out / "global_results-val.csv").is_file()

    video = viz / "synth-val-00.mp4"
    assert video.is_file() and video.stat().st_size > 0
    reader = cv2.VideoCapture(str(video))
    frames = 0
    while reader.read()[0]:
        frames += 1
    reader.release()
    assert frames == 4
    assert len(list((viz / "synth-val-00").glob("f*.jpg"))) == 4

    # A rerun resumes: the finished sequence is skipped, the table is printed again.
    run(data, tmp_path, "-s", "val", "-y", "17", "-D", str(data["davis"]))
    assert "J&F-Mean" in capsys.readouterr().out


def test_davis16_is_single_object(data, tmp_path, capsys) -> None:
    out = run(data, tmp_path, "-s", "val", "-y", "16", "-D", str(data["davis"]))
    labels = [read_label_png(p) for p in sorted((out / "synth-val-00").glob("*.png"))]
    assert len(labels) == 4 and all(set(np.unique(m)) <= {0, 1} for m in labels)
    assert labels[0].max() == 1
    assert "synth-val-00_1" in capsys.readouterr().out


def test_youtube_vos_submission_with_objects_entering_later(data, tmp_path) -> None:
    out = run(data, tmp_path, "-s", "valid", "-y", "18", "-D", str(data["ytvos"]))
    root = data["ytvos"]
    for video in ("synth000", "synth001", "synth002"):
        scored = sorted(p.stem for p in (root / "valid/JPEGImages" / video).glob("*.jpg"))
        first_given = min(p.stem for p in (root / "valid/Annotations" / video).glob("*.png"))
        expected = [s for s in scored if s >= first_given]
        assert sorted(p.stem for p in (out / "Annotations" / video).glob("*.png")) == expected
    # synth002: object 2 enters at frame 5; its given pixels must be labelled 2 there.
    given = read_label_png(root / "valid/Annotations/synth002/00005.png")
    result = read_label_png(out / "Annotations/synth002/00005.png")
    assert np.any(given == 2) and np.all(result[given == 2] == 2)
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert "Annotations/synth002/00005.png" in archive.namelist()


def test_bad_year_is_a_user_error(data, tmp_path) -> None:
    with pytest.raises(UserError, match="-y must be"):
        run(data, tmp_path, "-s", "val", "-y", "15", "-D", str(data["davis"]))


@pytest.mark.parametrize("argv, message", [
    (["-s", "test", "-y", "17"], "DAVIS 2017 has no set -s test"),
    (["-s", "val", "-y", "18"], None),  # YouTube-VOS accepts val for valid, as before
    (["-s", "train", "-y", "18"], "only the 'valid' set"),
])
def test_set_names(argv, message) -> None:
    args = eval_davis.build_parser().parse_args(argv)
    if message is None:
        assert eval_davis.set_name(args.y, args.s) == "ytvos18-valid"
    else:
        with pytest.raises(UserError, match=message):
            eval_davis.set_name(args.y, args.s)


def test_segment_video_keeps_upstreams_ids_and_make_segmenter_binds_it(data, tmp_path) -> None:
    video = DAVIS(data["davis"], year=2017, split="val").videos()[0]
    cpu = torch.device("cpu")
    model = load_model(str(data["weights"]), cpu)
    plain = segment_video(model, video)
    assert sorted(plain) == list(range(4))
    # make_segmenter: the same weights and schedule; resize changes nothing (HMMN runs at the stored size)
    bound = make_segmenter(str(data["weights"]), cpu, resize=False)(video)
    assert all(np.array_equal(bound[t], plain[t]) for t in plain)

    # Every object given in frame 0, ids with a gap (1 and 3): upstream's DAVIS rule, the network tracks ids
    # 1..max of the first mask as they are (object 2 empty), not renumbered.
    gapped = np.where(video.load_given_masks()[0] == 2, 3, video.load_given_masks()[0]).astype(np.uint8)
    mask = tmp_path / "00000.png"
    write_label_png(mask, gapped)
    out = segment_video(model, dataclasses.replace(video, mask_paths={0: mask}))
    expected = track(model, LazyFrames(video), gapped, 3)
    assert all(np.array_equal(out[t], expected[t]) for t in expected)
