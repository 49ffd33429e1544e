"""Frames reach the model as the official loaders make them: bytes divided by 255 on the CPU.

CUDA divides a tensor by a scalar through the scalar's reciprocal, which is one ulp away from the
true quotient for about half of the byte values; the official loaders (torchvision's `ToTensor` for
BMVOS/EMVOS/TBD, numpy in HMMN's `dataset.py` and GIS's `custom_transforms.py`) divide on the CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.inference.video_input import bytes_to_unit_float, frames_to_tensor
from gis.ivos import MEAN, STD, crop, pad_info, prepare_image
from hmmn.inference import frame_tensor


def reachable_devices():
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append(torch.device("mps"))
    return devices


DEVICES = reachable_devices()


def all_bytes_image() -> np.ndarray:
    """Every byte value in every channel: a uint8 [16, 16, 3] image (channel c shifted by 85 * c)."""
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    return np.stack([np.roll(values, 85 * c) for c in range(3)], axis=-1)


@pytest.fixture
def moved_dtypes(monkeypatch):
    """The dtypes of all tensors passed through `Tensor.to` while the test runs."""
    seen = []
    original = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        seen.append(self.dtype)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    return seen


def test_helper_equals_numpy_float32_division():
    image = all_bytes_image()
    expected = image.astype(np.float32) / np.float32(255.0)
    assert np.array_equal(bytes_to_unit_float(image).numpy(), expected)
    assert np.array_equal(frames_to_tensor(image[None])[0, 0].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_hmmn_frames_equal_upstream_float64_division(device):
    image = all_bytes_image()
    upstream = (image / 255.0).astype(np.float32)  # dataset.py: float64 division, then .float()
    got = frame_tensor(image, device)
    assert got.device.type == device.type and got.shape == (1, 3, 16, 16)
    assert np.array_equal(got[0].permute(1, 2, 0).cpu().numpy(), upstream)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_gis_frames_equal_upstream_normalisation(device):
    image = all_bytes_image()
    # custom_transforms.Normalize_ApplymeanvarImage, in numpy float32
    upstream = np.subtract(image.astype(np.float32) / 255.0, np.array(MEAN, dtype=np.float32)) \
        / np.array(STD, dtype=np.float32)
    pad = pad_info(16, 16)
    got = prepare_image(image, pad, device)
    assert got.device.type == device.type and got.shape == (1, 3, 32, 32)
    assert np.array_equal(crop(got, pad)[0].permute(1, 2, 0).cpu().numpy(), upstream)


def test_bytes_are_divided_before_they_move(moved_dtypes):
    """Whatever the device, what is moved is already float: the division never runs on the device."""
    image = all_bytes_image()
    cpu = torch.device("cpu")
    frame_tensor(image, cpu)
    prepare_image(image, pad_info(16, 16), cpu)
    assert moved_dtypes and torch.uint8 not in moved_dtypes
