"""The synthetic sample: deterministic, in the layouts the loaders read, with the promised properties."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.data.datasets import COCO, DAVIS, YouTubeVOS
from common.data.synthetic import make_coco_sample, make_davis_sample, make_sample, make_ytvos_sample
from common.runtime.errors import UserError

SMALL = dict(n_videos=2, n_frames=6, height=64, width=96, n_objects=2)


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_reruns_are_byte_identical_and_seeds_differ(tmp_path):
    a = make_sample(tmp_path / "a", seed=3, n_videos=2, n_frames=4, height=48, width=64, coco_images=2)
    first = {k: _digest(p) for k, p in a.items()}
    make_sample(tmp_path / "a", seed=3, n_videos=2, n_frames=4, height=48, width=64, coco_images=2)  # in place
    b = make_sample(tmp_path / "b", seed=3, n_videos=2, n_frames=4, height=48, width=64, coco_images=2)
    assert {k: _digest(p) for k, p in a.items()} == first
    assert {k: _digest(p) for k, p in b.items()} == first
    c = make_sample(tmp_path / "c", seed=4, n_videos=2, n_frames=4, height=48, width=64, coco_images=2)
    assert _digest(c["davis"]) != first["davis"]


def test_davis_sample_has_moving_occluding_objects(tmp_path):
    root = make_davis_sample(tmp_path / "DAVIS", seed=0, **SMALL)
    davis = DAVIS(root, 2017, "val")
    assert davis.names == ["synth-val-00", "synth-val-01"]
    for video in davis.videos():
        gt = davis.gt_masks(video.name)
        assert gt.shape == (6, 64, 96)
        assert set(np.unique(gt[0])) == {0, 1, 2}  # every object visible in the first frame
        centroids = [np.argwhere(gt[t] == 1).mean(0) for t in range(6)]
        steps = np.linalg.norm(np.diff(centroids, axis=0), axis=1)
        assert steps.max() > 0.5 and steps.max() < 20  # moving, but smoothly
        frames = video.load_frames().astype(np.float32)
        assert frames[:, gt[0] == 0].std() > 10  # textured, not flat
    assert DAVIS(root, 2017, "train").names == ["synth-train-00", "synth-train-01"]
    test_dev = DAVIS(root, 2017, "test-dev").videos()[0]
    assert test_dev.gt_paths is None and list(test_dev.mask_paths) == [0]


def test_objects_occlude_each_other_somewhere(tmp_path):
    # Occlusion: an object's visible area shrinks below its own size while another object covers it.
    root = make_davis_sample(tmp_path / "DAVIS", seed=0, n_videos=4, n_frames=8, height=64, width=96, n_objects=3)
    occluded = 0
    for name in DAVIS(root).names:
        gt = DAVIS(root).gt_masks(name)
        areas = np.stack([(gt == k).sum((1, 2)) for k in (1, 2, 3)])
        occluded += int((areas.min(1) < 0.8 * areas.max(1)).sum())
    assert occluded > 0


def test_ytvos_sample_objects_enter_mid_video(tmp_path):
    root = make_ytvos_sample(tmp_path / "YTVOS", seed=0, n_videos=3, n_frames=16, height=64, width=96, n_objects=2)
    assert (root / "valid" / "meta.json").is_file()
    videos = YouTubeVOS(root).videos()
    late = [v for v in videos if len(v.mask_paths) > 1]
    assert late, "some object must enter after the first annotated frame"
    for video in late:
        given = video.load_given_masks()
        first, later = sorted(given)[:2]
        # the later annotation holds only the entering object, as in YouTube-VOS
        assert set(np.unique(given[later])) == {0, 2}
        assert 2 not in np.unique(given[first])
    assert any(v.frame_names[0] != "00000" for v in videos), "a video must start at a later annotated frame"
    gt = root / "valid_gt" / "Annotations"
    assert sorted(p.name for p in gt.iterdir()) == [v.name for v in videos]


def test_coco_sample_pairs(tmp_path):
    coco = COCO(make_coco_sample(tmp_path / "COCO", n_images=3, height=48, width=64))
    assert len(coco) == 3
    for image, mask in coco:
        assert image.stem == mask.stem


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "DAVIS").mkdir()
    (tmp_path / "DAVIS" / "precious.txt").write_text("x")
    with pytest.raises(UserError, match="not a synthetic sample"):
        make_davis_sample(tmp_path / "DAVIS", **SMALL)
    assert (tmp_path / "DAVIS" / "precious.txt").exists()


def test_cli_writes_all_three_layouts(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "common.data.synthetic", str(out), "--videos", "1", "--frames", "3",
                             "--height", "48", "--width", "64", "--objects", "1", "--coco-images", "1"],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert DAVIS(out / "DAVIS").names == ["synth-val-00"]
    assert len(YouTubeVOS(out / "YouTubeVOS")) == 1
    assert len(COCO(out / "COCO")) == 1


def test_cli_reports_bad_input_in_one_line(tmp_path):
    (tmp_path / "DAVIS").mkdir()
    (tmp_path / "DAVIS" / "mine.txt").write_text("x")
    result = subprocess.run([sys.executable, "-m", "common.data.synthetic", str(tmp_path)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not a synthetic sample" in result.stderr
    assert "Traceback" not in result.stderr
