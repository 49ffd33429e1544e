"""EMVOS behaviours the parity fixtures do not cover: objects entering mid-video, output frame selection,
the training path's shapes and gradients."""
from __future__ import annotations

import pytest
import torch

from emvos.model import EMVOS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(one_thread) -> EMVOS:
    torch.manual_seed(0)
    return EMVOS().eval()


def labels(h: int, w: int, boxes: dict) -> torch.Tensor:
    m = torch.zeros(1, 1, h, w, dtype=torch.long)
    for k, (y0, y1, x0, x1) in boxes.items():
        m[..., y0:y1, x0:x1] = k
    return m


def test_object_entering_mid_video(model):
    imgs = torch.rand(1, 4, 3, 40, 56)  # not a multiple of 16: padded inside, cropped back
    first = labels(40, 56, {1: (5, 20, 5, 20)})
    entering = labels(40, 56, {2: (25, 38, 30, 50)})
    with torch.no_grad():
        out = model(imgs, [first, None, entering, None], None)["masks"]
        selected = model(imgs, [first, None, entering, None], [10, 12, 13])["masks"]
    assert out.shape == (1, 4, 1, 40, 56) and out.dtype == torch.int64
    assert torch.equal(out[:, 0], first)
    assert torch.equal(out[:, 2][entering != 0], entering[entering != 0])  # the given object is written as given
    assert set(out.unique().tolist()) <= {0, 1, 2}
    # frames 0 and 2 (given) always come out; frame 1 (number 11) is not listed, frame 3 (13) is
    assert selected.shape[1] == 3
    assert torch.equal(selected[:, 1], out[:, 2]) and torch.equal(selected[:, 2], out[:, 3])


def test_training_path(model):
    imgs = torch.rand(2, 3, 3, 32, 32)
    masks = torch.zeros(2, 3, 1, 32, 32, dtype=torch.long)
    masks[:, :, :, 8:20, 8:20] = 1
    scores = model(imgs, masks[:, :1], None)["scores"]
    assert scores.shape == (2, 2, 2, 32, 32)
    scores.sum().backward()
    assert all(p.grad is None for p in model.vos.encoder.parameters())  # the encoder runs without gradients
    assert model.vos.matcher.conv1.conv.weight.grad is not None
    assert model.vos.decoder.deconv3.deconv.weight.grad is not None
    model.zero_grad(set_to_none=True)
