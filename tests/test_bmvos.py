"""BMVOS behaviour beyond the parity fixtures: matching rules, mid-video objects, output frames and
the training path (the evaluator's resize: tests/test_video_input.py). Tiny inputs, seeded weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bmvos.model import BMVOS, BijectiveMatcher, add_coordinates

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> BMVOS:
    torch.manual_seed(0)
    return BMVOS().eval()


def reference_bijective(score: np.ndarray, k: int = 4) -> np.ndarray:
    """Plain-loop statement of the rule: per reference row keep entries >= its k-th best, set the rest to
    the row minimum, then take the max over reference rows. `score` is [HW_ref, HW_query]."""
    kept = score.copy()
    for r in range(score.shape[0]):
        cut = np.sort(score[r])[::-1][k - 1]
        kept[r][score[r] < cut] = score[r].min()
    return kept.max(axis=0)


def test_bijective_matching_matches_the_plain_rule():
    gen = torch.Generator().manual_seed(1)
    h, w = 3, 4
    sim = torch.rand(2, h * w, h, w, generator=gen)
    prob = torch.rand(2, h * w, generator=gen)
    ours = BijectiveMatcher()._bijective(sim, prob)
    for b in range(2):
        score = (sim[b].reshape(h * w, h * w) * prob[b].reshape(-1, 1)).numpy()
        np.testing.assert_allclose(ours[b, 0].reshape(-1).numpy(), reference_bijective(score), rtol=0, atol=0)


def test_bijective_matching_keeps_ties_with_the_kth_score():
    # Reference row 0 has its 4th and 5th best tied at 0.6: both are kept (strict `<`), so query 4 sees 0.6;
    # the other rows are constant 0.05, so nothing of theirs is cut.
    score = torch.full((6, 6), 0.05)
    score[0] = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.6, 0.1])
    out = BijectiveMatcher()._bijective(score.view(1, 6, 1, 6), torch.ones(1, 6))
    torch.testing.assert_close(out.view(6), torch.tensor([0.9, 0.8, 0.7, 0.6, 0.6, 0.1]))


def test_coordinates_are_normalised_rows_cols_and_radius():
    x = add_coordinates(torch.zeros(1, 6, 3, 5))
    assert x.shape == (1, 9, 3, 5)
    torch.testing.assert_close(x[0, 6, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(x[0, 7, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(x[0, 8], (x[0, 6] ** 2 + x[0, 7] ** 2).sqrt())


def _blob_mask(h: int, w: int, boxes) -> torch.Tensor:
    mask = torch.zeros(1, 1, h, w, dtype=torch.long)
    for label, (y0, y1, x0, x1) in boxes.items():
        mask[..., y0:y1, x0:x1] = label
    return mask


def test_objects_entering_mid_video_and_output_frames(model):
    h, w, length = 30, 34, 4  # not multiples of 16: padding and cropping are exercised too
    imgs = torch.rand(1, length, 3, h, w, generator=torch.Generator().manual_seed(2))
    first = _blob_mask(h, w, {1: (2, 12, 2, 12), 2: (15, 28, 18, 32)})
    entering = _blob_mask(h, w, {3: (16, 26, 2, 10)})
    given = [first, None, entering, None]

    calls = []
    hook = model.vos.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    try:
        with torch.no_grad():
            out = model(imgs, given, val_frame_ids=[10, 12, 13])
    finally:
        hook.remove()

    # frame 1: objects 1, 2; frame 2: still 1, 2 (object 3 starts from its mask); frame 3: 1, 2, 3
    assert len(calls) == 2 + 2 + 3
    # frame 1 is not in the official selection (10 + 1 not listed); frame 2 has a given mask; frame 3 is listed
    assert out.frame_ids == [0, 2, 3]
    assert out.masks.shape == (1, 3, 1, h, w) and out.masks.dtype == torch.long
    assert torch.equal(out.masks[:, 0], first)
    at_entry = out.masks[0, 1, 0]
    assert torch.equal(at_entry[entering[0, 0] != 0], entering[0, 0][entering[0, 0] != 0])
    assert set(at_entry[entering[0, 0] == 0].unique().tolist()) <= {0, 1, 2}
    assert set(out.masks[0, 2].unique().tolist()) <= {0, 1, 2, 3}


def test_all_frames_are_output_without_val_frame_ids(model):
    imgs = torch.rand(1, 3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    given = [_blob_mask(32, 32, {1: (4, 20, 4, 20)}), None, None]
    with torch.no_grad():
        out = model(imgs, given)
    assert out.frame_ids == [0, 1, 2]
    assert set(out.masks.unique().tolist()) <= {0, 1}


def test_training_path_shapes_and_frozen_encoder(model):
    b, length, h, w = 2, 3, 30, 40
    gen = torch.Generator().manual_seed(4)
    imgs = torch.rand(b, length, 3, h, w, generator=gen)
    first = torch.zeros(b, 1, h, w, dtype=torch.long)
    first[:, :, 5:20, 8:30] = 1
    model.zero_grad()
    scores = model.forward_train(imgs, first)
    assert scores.shape == (b, length - 1, 2, h, w)
    scores.logsumexp(dim=2).mean().backward()
    assert all(p.grad is None for p in model.vos.encoder.parameters())
    assert model.vos.decoder.blend1.conv.weight.grad is not None
    assert model.vos.mask_embedder.conv1.conv.weight.grad is not None
    assert model.vos.matcher.conv.conv.weight.grad is not None
    model.zero_grad()
