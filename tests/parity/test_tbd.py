"""TBD against the golden outputs of the official code (../shared/parity/tbd, see its README)."""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List

import pytest
import torch

from tbd.model import TBD, distance_matrix
from tests.parity.harness import (DEVICE, Case, assert_close, assert_masks_agree, assert_matches_manifest, cases,
                                  check_per_call, dispatch, expected_outputs, fill_, load_case, to_imgs, video_call)

pytestmark = pytest.mark.usefixtures("one_thread")  # results stay within the tolerances


@lru_cache(maxsize=1)
def _filled() -> tuple:
    model = TBD()
    fill_(model)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def filled_model(mode: str = "eval") -> TBD:
    """The fixtures' weights, fresh for every case (a train step changes BatchNorm statistics and grads)."""
    model, state = _filled()
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    model.to(DEVICE)
    return model.train() if mode == "train" else model.eval()


def test_state_dict_matches_official_manifest():
    assert_matches_manifest(TBD(), "tbd")


# ----------------------------------------------------------------------------------------------
# Adapters, one per fixture kind
# ----------------------------------------------------------------------------------------------

def check_dist(case: Case) -> None:
    # atol 1e-6 as the fixture README allows: the reference's float32 `** 0.5` (torch 2.9.1) rounded
    # sqrt(34) and sqrt(37) one ulp (4.8e-7) away from the correctly rounded value torch 2.14 gives.
    for height, width in case["inputs"]["sizes"]:
        expected = case["outputs"][f"{height}x{width}"]
        assert_close(f"dist {height}x{width}", distance_matrix(height, width), expected, atol=1e-6)


def check_encoder(case: Case) -> None:
    model = filled_model()
    img = to_imgs(case["inputs"]["frame"])[None].to(DEVICE)
    with torch.no_grad():
        feats = model.vos.encoder(img)
        key = model.vos.matcher.get_key(feats["s16"])
    for name in ("s4", "s8", "s16"):
        assert_close(name, feats[name], case["outputs"][name], atol=1e-4)
    assert_close("key", key, case["outputs"]["key"], atol=1e-4)


def check_video(case: Case) -> None:
    model = filled_model()
    call = video_call(case, extra=("dist",))
    outputs = expected_outputs(case)

    # Record every decoder call (matching score, previous 1/16 mask, logits) and the dsf output.
    recorded: Dict[str, List[torch.Tensor]] = {"matching_scores": [], "prev_seg_16": [], "final_scores": []}
    sds: List[torch.Tensor] = []

    def on_decoder(module, args, out) -> None:
        recorded["matching_scores"].append(args[1].clone())
        recorded["prev_seg_16"].append(args[2].clone())
        recorded["final_scores"].append(out.clone())

    hooks = [model.vos.decoder.register_forward_hook(on_decoder),
             model.dsf.register_forward_hook(lambda m, args, out: sds.append(out.clone()))]
    try:
        with torch.no_grad():
            masks = model(call.imgs, call.given_masks, call.extra["dist"], call.val_frame_ids)["masks"]
    finally:
        for h in hooks:
            h.remove()

    assert len(sds) == 1
    if "sds" in outputs:
        assert_close("sds", sds[0], outputs["sds"], atol=1e-6)
    check_per_call(outputs, recorded, {"matching_scores": 5e-4, "prev_seg_16": 1e-5, "final_scores": 1e-3})
    assert masks.dtype == torch.int64
    assert torch.equal(masks[:, 0], call.given_masks[0]), "frame 0 must be the given mask"
    if "out_frame_ids" in outputs:
        assert masks.shape[1] == len(outputs["out_frame_ids"]), "one output entry per listed frame"
    if "masks" in outputs:
        assert_masks_agree("masks", masks, outputs["masks"].long(), max_fraction=0.005)


def check_train_step(case: Case) -> None:
    from common.training import clip_loss, fg_iou  # the shared trainer's loss and IoU statistic

    train_mode = str(case["meta"]["module_mode"]).startswith("train")
    model = filled_model("train" if train_mode else "eval")
    inputs, outputs = case["inputs"], case["outputs"]
    imgs = to_imgs(inputs["frames"]).to(DEVICE)
    masks = inputs["masks"].long().to(DEVICE)
    b = imgs.shape[0]
    dist = inputs["dist"].unsqueeze(0).repeat(b, 1, 1).to(DEVICE)

    # As the reference trainer calls it (tbd.train.forward_clip builds the same matrix itself; the
    # fixture's own matrix is fed here so the case is exactly the recorded one).
    scores = model(imgs, [masks[:, 0]] + [None] * (imgs.shape[1] - 1), dist, None)["scores"]
    loss = clip_loss(scores, masks)
    loss.backward()
    h, w = scores.shape[-2:]
    iou = fg_iou(scores.detach().reshape(-1, 2, h, w), masks[:, 1:].reshape(-1, h, w)).item()

    assert_close("scores", scores.detach(), outputs["scores"], atol=1e-3)
    assert loss.item() == pytest.approx(outputs["loss"], rel=1e-5)
    assert iou == pytest.approx(outputs["iou"], rel=1e-4)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(outputs["grad_norms"]), "parameters receiving gradients differ"
    for name, norm in outputs["grad_norms"].items():
        assert grads[name].double().norm().item() == pytest.approx(norm, rel=1e-2), name
    for name, expected in outputs["grads_small"].items():
        scale = expected.abs().max().item()
        assert_close(f"grad {name}", grads[name] / scale, expected / scale, atol=1e-2)


def check_swap_attach(case: Case) -> None:
    from common.training import swap_and_attach  # shared by EMVOS and TBD

    imgs = to_imgs(case["inputs"]["frames"])
    masks = case["inputs"]["masks"].long()
    out_imgs, out_masks = swap_and_attach(imgs, masks)
    assert torch.equal(out_imgs, case["outputs"]["imgs"])
    assert torch.equal(out_masks, case["outputs"]["masks"].long())


ADAPTERS = {
    "dist": check_dist,
    "encoder": check_encoder,
    "video": check_video,
    "train_step": check_train_step,
    "swap_attach": check_swap_attach,
}


@cases("tbd")
def test_parity(case_path):
    dispatch(load_case(case_path), ADAPTERS)
