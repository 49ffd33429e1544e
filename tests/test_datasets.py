"""Dataset loaders: what they hand to models, and one clear error per broken layout."""
import shutil

import numpy as np
import pytest

from common.data.datasets import COCO, DAVIS, YouTubeVOS
from common.data.palette import read_label_png, write_label_png
from common.data.synthetic import make_coco_sample, make_davis_sample, make_ytvos_sample
from common.runtime.errors import UserError


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return {
        "davis": make_davis_sample(root / "DAVIS", n_videos=2, n_frames=5, height=48, width=64, n_objects=2),
        "ytvos": make_ytvos_sample(root / "YTVOS", n_videos=2, n_frames=12, height=48, width=64, n_objects=2),
        "coco": make_coco_sample(root / "COCO", n_images=2, height=48, width=64),
    }


@pytest.fixture
def davis_copy(sample, tmp_path):
    return shutil.copytree(sample["davis"], tmp_path / "DAVIS")


def test_davis_2017_video(sample):
    davis = DAVIS(sample["davis"], 2017, "val")
    video = davis.videos()[0]
    assert video.frame_names == ["00000", "00001", "00002", "00003", "00004"]
    assert list(video.mask_paths) == [0] and video.output_frames is None
    assert video.size == (48, 64)
    frames = video.load_frames()
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    given = video.load_given_masks()
    assert set(np.unique(given[0])) == {0, 1, 2}
    np.testing.assert_array_equal(given[0], davis.gt_masks(video.name)[0])


def test_davis_2016_is_binarised_2017(sample):
    d17, d16 = DAVIS(sample["davis"], 2017, "val"), DAVIS(sample["davis"], 2016, "val")
    name = d16.names[0]
    np.testing.assert_array_equal(d16.gt_masks(name), (d17.gt_masks(name) != 0).astype(np.uint8))
    assert set(np.unique(d16.video(name).load_given_masks()[0])) == {0, 1}
    with pytest.raises(UserError, match="2016 has no test-dev"):
        DAVIS(sample["davis"], 2016, "test-dev")


def test_void_is_background_in_given_masks_and_kept_in_gt(davis_copy):
    path = davis_copy / "Annotations" / "480p" / "synth-val-00" / "00000.png"
    labels = read_label_png(path)
    labels[:2] = 255
    write_label_png(path, labels)
    d17 = DAVIS(davis_copy, 2017)
    assert 255 not in d17.video("synth-val-00").load_given_masks()[0]
    assert (d17.gt_masks("synth-val-00")[0, :2] == 255).all()
    d16 = DAVIS(davis_copy, 2016)
    assert (d16.gt_masks("synth-val-00")[0, :2] == 255).all()
    assert set(np.unique(d16.gt_masks("synth-val-00"))) == {0, 1, 255}


def test_raw_2016_foreground_255_is_reported(davis_copy):
    path = davis_copy / "Annotations" / "480p" / "synth-val-00" / "00000.png"
    write_label_png(path, np.where(read_label_png(path) > 0, 255, 0).astype(np.uint8))
    with pytest.raises(UserError, match="00000.png.*255"):
        DAVIS(davis_copy, 2016).video("synth-val-00").load_given_masks()


def test_davis_layout_errors_name_the_path(davis_copy, tmp_path):
    with pytest.raises(UserError, match="DAVIS root not found: .*nowhere"):
        DAVIS(tmp_path / "nowhere")
    (davis_copy / "ImageSets" / "2017" / "val.txt").unlink()
    with pytest.raises(UserError, match="ImageSets/2017/val.txt"):
        DAVIS(davis_copy, 2017, "val")
    (davis_copy / "Annotations" / "480p" / "synth-train-00" / "00003.png").unlink()
    with pytest.raises(UserError, match="synth-train-00 has 5 frames .* but 4 annotations"):
        DAVIS(davis_copy, 2017, "train")
    (davis_copy / "JPEGImages" / "480p" / "synth-val-01" / "00002.jpg").unlink()
    with pytest.raises(UserError, match=r"synth-val-01 has missing or misnamed frames .*\['00002'\]"):
        DAVIS(davis_copy, 2016, "val")


def test_youtube_vos_videos_start_at_first_annotation(sample):
    ytvos = YouTubeVOS(sample["ytvos"], 2018)
    assert ytvos.meta is not None and set(ytvos.meta["videos"]) == set(ytvos.names)
    first, second = ytvos.videos()
    # video 0: both objects annotated on frame 0; all 12 frames, scored every 5th
    assert first.frame_names[0] == "00000" and len(first) == 12
    assert first.output_frames == [0, 5, 10] and list(first.mask_paths) == [0]
    # video 1 starts at its first annotation (frame 00005); object 2 enters five frames later
    assert second.frame_names[0] == "00005" and len(second) == 7
    assert second.output_frames == [0, 5]
    assert {i: p.name for i, p in second.mask_paths.items()} == {0: "00005.png", 5: "00010.png"}
    given = second.load_given_masks()
    assert set(np.unique(given[0])) == {0, 1} and set(np.unique(given[5])) == {0, 2}
    scored_only = YouTubeVOS(sample["ytvos"], 2018, all_frames=False).video(second.name)
    assert scored_only.frame_names == ["00005", "00010"] and scored_only.output_frames == [0, 1]


def test_youtube_vos_layout_errors(sample, tmp_path):
    root = shutil.copytree(sample["ytvos"], tmp_path / "YT")
    with pytest.raises(UserError, match="2019 root not found"):
        YouTubeVOS(tmp_path / "none", 2019)
    (root / "valid_all_frames" / "JPEGImages" / "synth001" / "00010.jpg").unlink()
    with pytest.raises(UserError, match=r"scored frames \['00010'\].*synth001"):
        YouTubeVOS(root)
    shutil.rmtree(root / "valid_all_frames")
    with pytest.raises(UserError, match="valid_all_frames"):
        YouTubeVOS(root)


def test_coco_pairs_and_missing_partner(sample, tmp_path):
    coco = COCO(sample["coco"])
    assert [(i.name, m.name) for i, m in coco] == [("000000000001.jpg", "000000000001.png"),
                                                   ("000000000002.jpg", "000000000002.png")]
    root = shutil.copytree(sample["coco"], tmp_path / "COCO")
    (root / "Annotations" / "000000000002.png").unlink()
    with pytest.raises(UserError, match="000000000002.png is missing"):
        COCO(root)
