"""The video runner: writes scored frames atomically, resumes, validates outputs; submission zips."""
import zipfile

import numpy as np
import pytest
import torch

from common.data.datasets import DAVIS, YouTubeVOS
from common.data.palette import read_label_png
from common.data.synthetic import make_davis_sample, make_ytvos_sample
from common.inference.runner import run_videos, zip_submission
from common.runtime.errors import UserError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = make_davis_sample(tmp_path_factory.mktemp("d") / "DAVIS", n_videos=3, n_frames=4, height=32, width=48)
    return DAVIS(root)


def copy_first_mask(video):
    """A trivial segmenter: the first-frame annotation for every frame."""
    first = video.load_given_masks()[0]
    return {i: first.copy() for i in range(len(video))}


def test_writes_every_frame_and_reports_fps(davis, tmp_path):
    stats = run_videos(davis.videos(), copy_first_mask, tmp_path, device=CPU, desc="test")
    assert [v.name for v in stats.videos] == davis.names and stats.skipped == []
    assert stats.total_frames == 12 and stats.total_seconds > 0 and stats.fps > 0
    for video in davis.videos():
        names = sorted(p.name for p in (tmp_path / video.name).iterdir())
        assert names == [f"{i:05d}.png" for i in range(4)]
        np.testing.assert_array_equal(read_label_png(tmp_path / video.name / "00003.png"),
                                      video.load_given_masks()[0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_interrupted_run_keeps_only_finished_videos_and_resumes(davis, tmp_path):
    calls = []

    def dies_on_second(video):
        calls.append(video.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return copy_first_mask(video)

    with pytest.raises(KeyboardInterrupt):
        run_videos(davis.videos(), dies_on_second, tmp_path, device=CPU)
    assert sorted(p.name for p in tmp_path.iterdir()) == [davis.names[0]]
    # a stale temporary folder from a crash during writing is cleaned up, never taken for a result
    (tmp_path / f".tmp-{davis.names[1]}").mkdir()
    (tmp_path / f".tmp-{davis.names[1]}" / "00000.png").write_bytes(b"half")
    calls.clear()
    stats = run_videos(davis.videos(), copy_first_mask_counted(calls), tmp_path, device=CPU)
    assert stats.skipped == [davis.names[0]] and calls == davis.names[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == davis.names


def copy_first_mask_counted(calls):
    def segment(video):
        calls.append(video.name)
        return copy_first_mask(video)
    return segment


def test_incomplete_folder_is_redone(davis, tmp_path):
    run_videos(davis.videos()[:1], copy_first_mask, tmp_path, device=CPU)
    (tmp_path / davis.names[0] / "00002.png").unlink()
    stats = run_videos(davis.videos()[:1], copy_first_mask, tmp_path, device=CPU)
    assert [v.name for v in stats.videos] == davis.names[:1]
    assert (tmp_path / davis.names[0] / "00002.png").is_file()


@pytest.mark.parametrize("bad, error", [
    (lambda m: m.astype(np.int64), TypeError),
    (lambda m: m[:-1], ValueError),
    (lambda m: None, TypeError),
])
def test_bad_label_maps_are_rejected_before_anything_is_written(davis, tmp_path, bad, error):
    def segment(video):
        out = copy_first_mask(video)
        out[2] = bad(out[2])
        return out

    with pytest.raises(error, match="frame 2"):
        run_videos(davis.videos()[:1], segment, tmp_path, device=CPU)
    assert list(tmp_path.iterdir()) == []


def test_missing_frame_is_rejected(davis, tmp_path):
    with pytest.raises(ValueError, match=r"frames \[3\]"):
        run_videos(davis.videos()[:1], lambda v: {i: copy_first_mask(v)[i] for i in range(3)}, tmp_path,
                   device=CPU)


def test_youtube_vos_writes_only_scored_frames_and_zips(tmp_path):
    root = make_ytvos_sample(tmp_path / "YT", n_videos=2, n_frames=11, height=32, width=48)
    ytvos = YouTubeVOS(root)
    results = tmp_path / "results"
    run_videos(ytvos.videos(), copy_first_mask, results, device=CPU)
    first, second = ytvos.videos()
    assert sorted(p.name for p in (results / first.name).iterdir()) == ["00000.png", "00005.png", "00010.png"]
    assert sorted(p.name for p in (results / second.name).iterdir()) == ["00005.png", "00010.png"]
    zipped = zip_submission(results, tmp_path / "sub.zip", layout="youtube")
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == [f"Annotations/{first.name}/00000.png",
                                              f"Annotations/{first.name}/00005.png",
                                              f"Annotations/{first.name}/00010.png",
                                              f"Annotations/{second.name}/00005.png",
                                              f"Annotations/{second.name}/00010.png"]


def test_davis_zip_layout_and_errors(davis, tmp_path):
    results = tmp_path / "results"
    run_videos(davis.videos()[:1], copy_first_mask, results, device=CPU)
    with zipfile.ZipFile(zip_submission(results, tmp_path / "out" / "davis.zip")) as archive:
        assert sorted(archive.namelist()) == [f"{davis.names[0]}/{i:05d}.png" for i in range(4)]
    with pytest.raises(UserError, match="results folder not found"):
        zip_submission(tmp_path / "nothing", tmp_path / "x.zip")
    (results / "empty-video").mkdir()
    with pytest.raises(UserError, match="empty-video holds no PNGs"):
        zip_submission(results, tmp_path / "y.zip")
    assert not (tmp_path / "y.zip").exists()
