"""BMVOS against the golden outputs of the official code (../shared/parity/bmvos, see its README).

Tolerances are the README's suggestions. Per-call tensors are recorded with hooks on the model's
normal inference path: the decoder's inputs (matching scores, mask features) and `vos`'s output
(the raw logits), in call order.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List

import pytest
import torch

from bmvos.model import BMVOS
from tests.parity.harness import (DEVICE, Case, assert_close, assert_masks_agree, assert_matches_manifest, cases,
                                  check_per_call, dispatch, expected_outputs, fill_, load_case, to_imgs, video_call)


@pytest.fixture(autouse=True)
def _recording_threads():
    """The fixtures were recorded with 2 threads (set per test: other modules may change it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


MAX_FLIPPED_FRACTION = 1e-3  # README: near-ties between objects may flip a few pixels per frame


@lru_cache(maxsize=1)
def _filled_state() -> Dict[str, torch.Tensor]:
    model = BMVOS()
    fill_(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def filled_model() -> BMVOS:
    model = BMVOS()
    model.load_state_dict(_filled_state())
    return model.to(DEVICE).eval()


def test_state_dict_matches_official_manifest():
    assert_matches_manifest(BMVOS(), "bmvos")


def check_encoder(case: Case) -> None:
    model = filled_model()
    with torch.no_grad():
        feats = model.vos.encoder(to_imgs(case["inputs"]["frame"])[None].to(DEVICE))
        key = model.vos.matcher.get_key(feats["s16"])
    for name in ("s4", "s8", "s16"):
        assert_close(name, feats[name], case["outputs"][name], atol=2e-4)
    assert_close("key", key, case["outputs"]["key"], atol=1e-6)


def check_video(case: Case) -> None:
    model = filled_model()
    call = video_call(case)
    outputs = expected_outputs(case)

    recorded: Dict[str, List[torch.Tensor]] = {"matching_scores": [], "mask_feats": [], "final_scores": []}

    def on_decoder(module, args) -> None:
        recorded["matching_scores"].append(args[1].clone())
        recorded["mask_feats"].append(args[2].clone())

    decoder_hook = model.vos.decoder.register_forward_pre_hook(on_decoder)
    vos_hook = model.vos.register_forward_hook(lambda m, args, out: recorded["final_scores"].append(out.clone()))
    try:
        with torch.no_grad():
            result = model(call.imgs, call.given_masks, call.val_frame_ids)
    finally:
        decoder_hook.remove()
        vos_hook.remove()

    check_per_call(outputs, recorded, {"matching_scores": 1e-5, "mask_feats": 1e-4, "final_scores": 1e-3})
    if "out_frame_ids" in outputs:
        assert result.frame_ids == list(outputs["out_frame_ids"])
    assert result.masks.dtype == torch.long
    assert torch.equal(result.masks[:, 0], call.given_masks[0]), "entry 0 must be the given mask itself"
    if "masks" in outputs:
        assert_masks_agree("masks", result.masks, outputs["masks"], MAX_FLIPPED_FRACTION)


ADAPTERS = {"encoder": check_encoder, "video": check_video}


@cases("bmvos")
def test_fixture(case_path):
    dispatch(load_case(case_path), ADAPTERS)
