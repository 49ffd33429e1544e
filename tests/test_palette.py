"""Palette PNG round trips and the errors for unreadable or multi-channel masks."""
import numpy as np
import pytest
from PIL import Image

from common.data.palette import DAVIS_PALETTE, read_label_png, read_rgb, write_label_png
from common.runtime.errors import UserError


def test_davis_palette_matches_the_dataset_colours():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    assert DAVIS_PALETTE[0].tolist() == [0, 0, 0]
    assert DAVIS_PALETTE[1].tolist() == [128, 0, 0]
    assert DAVIS_PALETTE[2].tolist() == [0, 128, 0]
    assert DAVIS_PALETTE[3].tolist() == [128, 128, 0]
    assert DAVIS_PALETTE[4].tolist() == [0, 0, 128]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192]


def test_label_png_round_trip_keeps_ids_and_void(tmp_path):
    labels = (np.arange(6 * 7).reshape(6, 7) % 5).astype(np.uint8)
    labels[0, 0] = 255
    path = tmp_path / "sub" / "00000.png"
    write_label_png(path, labels)
    image = Image.open(path)
    assert image.mode == "P"
    assert np.array_equal(np.asarray(image.getpalette()[:9]), [0, 0, 0, 128, 0, 0, 0, 128, 0])
    np.testing.assert_array_equal(read_label_png(path), labels)


def test_grayscale_masks_read_like_convert_p(tmp_path):
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    Image.fromarray(labels).save(tmp_path / "m.png")  # mode 'L'
    np.testing.assert_array_equal(read_label_png(tmp_path / "m.png"), labels)


def test_rgb_mask_is_rejected_with_its_path(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(UserError, match="rgb.png.*single-channel"):
        read_label_png(path)


def test_corrupt_and_missing_images_name_the_path(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(good)
    assert read_rgb(good).shape == (16, 16, 3)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:40])
    with pytest.raises(UserError, match="corrupt.jpg"):
        read_rgb(corrupt)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="junk.png"):
        read_label_png(tmp_path / "junk.png")
    with pytest.raises(UserError, match="absent.png"):
        read_label_png(tmp_path / "absent.png")


def test_write_rejects_non_2d_labels(tmp_path):
    with pytest.raises(ValueError):
        write_label_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
