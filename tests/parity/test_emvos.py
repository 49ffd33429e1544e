"""EMVOS against the official code's golden outputs (`$PARITY_ROOT/emvos`, see its README for tolerances)."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import torch

from common.training import TrainConfig, Trainer, swap_and_attach
from emvos.model import EMVOS
from emvos.train import emvos_forward_clip
from tests.parity.harness import (DEVICE, assert_close, assert_masks_agree, assert_matches_manifest, cases,
                                  check_per_call, dispatch, expected_outputs, fill_, load_case, to_imgs, video_call)

# The fixtures were recorded with 2 threads. With 1 thread the float32 gradient of `vos.matcher.conv2` (the key of
# the nearly saturated softmax) moves by ~3% (float64 agrees with the fixture within 0.4%), past its 2e-2 tolerance.
PARITY_THREADS = 2


@pytest.fixture(autouse=True, scope="module")
def parity_threads():
    """Set per module, not at import: other test modules pick their own thread count when collected."""
    before = torch.get_num_threads()
    torch.set_num_threads(PARITY_THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> EMVOS:
    m = EMVOS()
    fill_(m)
    return m.to(DEVICE).eval()


def test_state_dict_matches_manifest(model):
    assert_matches_manifest(model, "emvos")


def check_encoder(model: EMVOS, case) -> None:
    out = case["outputs"]
    img = to_imgs(case["inputs"]["frame"])[None].to(DEVICE)
    with torch.no_grad():
        feats = model.vos.encoder(img)
        norm_key = model.vos.matcher.get_norm_key(feats["s16"])
        key = model.vos.matcher.get_key(feats["s16"])
    for name in ("s4", "s8", "s16"):
        assert_close(name, feats[name], out[name], atol=1e-4)
    assert_close("norm_key", norm_key, out["norm_key"], atol=1e-4)
    assert_close("key", key, out["key"], atol=1e-4)


def check_video(model: EMVOS, case) -> None:
    call = video_call(case)
    out = expected_outputs(case)
    recorded = {"matching_scores": [], "prev_seg_16": [], "final_scores": []}

    def on_matcher(module, args, result) -> None:
        recorded["matching_scores"].append(result)

    def on_decoder(module, args, result) -> None:
        recorded["prev_seg_16"].append(args[2])
        recorded["final_scores"].append(result)

    hooks = [model.vos.matcher.register_forward_hook(on_matcher), model.vos.decoder.register_forward_hook(on_decoder)]
    try:
        with torch.no_grad():
            masks = model(call.imgs, call.given_masks, call.val_frame_ids)["masks"]
    finally:
        for h in hooks:
            h.remove()
    check_per_call(out, recorded, {"final_scores": 1e-3, "matching_scores": 5e-4, "prev_seg_16": 1e-5})
    assert masks.dtype == torch.int64
    if "out_frame_ids" in out:
        assert masks.shape[1] == len(out["out_frame_ids"]), "one output entry per listed frame"
    if "masks" in out:
        assert_masks_agree("masks", masks, out["masks"], max_fraction=0.005)


class _OneBatch(torch.utils.data.Dataset):
    def __init__(self, imgs: torch.Tensor, masks: torch.Tensor) -> None:
        self.imgs, self.masks = imgs, masks

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, i: int) -> dict:
        return {"imgs": self.imgs[i], "masks": self.masks[i]}


def check_train_step(filled: EMVOS, case) -> None:
    """One batch through the shared `Trainer` (swap-and-attach off, lr 0 so Adam leaves the weights)."""
    inputs, out, meta = case["inputs"], case["outputs"], case["meta"]
    bn_train = str(meta["module_mode"]).startswith("train")
    model = copy.deepcopy(filled).eval()  # as run.py builds it; the trainer sets the mode it was configured for
    captured = {}

    def forward_clip(m, imgs, masks):
        captured["scores"] = emvos_forward_clip(m, imgs, masks)
        return captured["scores"]

    data = _OneBatch(to_imgs(inputs["frames"]), inputs["masks"].long())
    config = TrainConfig(save_name="parity", epochs=1, batch_size=len(data), save_step=1, val_step=1, lr=0.0,
                         num_workers=0, shuffle=False, swap_attach_probability=0.0, bn_train=bn_train)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, forward_clip, data, config, Path(tmp), DEVICE)
        loss, iou = trainer.train_epoch(1)
    assert model.training == bn_train
    assert_close("scores", captured["scores"].detach(), out["scores"], atol=1e-3)
    assert loss == pytest.approx(out["loss"], rel=1e-5)
    assert iou == pytest.approx(out["iou"], abs=1e-3)

    params = dict(model.named_parameters())
    with_grad = {n for n, p in params.items() if p.grad is not None}
    assert with_grad == set(out["grad_norms"]), "parameters receiving a gradient differ (the encoder must get none)"
    for name, expected in out["grad_norms"].items():
        rel = 2e-2 if name.startswith("vos.matcher.conv2.") else 1e-2
        assert params[name].grad.double().norm().item() == pytest.approx(expected, rel=rel), name
    for name, expected in out["grads_small"].items():
        rel = 2e-2 if name.startswith("vos.matcher.conv2.") else 1e-2
        diff = (params[name].grad.cpu().double() - expected.double()).abs().max().item()
        assert diff <= rel * expected.double().abs().max().item(), f"{name}: grad max |diff| {diff:.3g}"


def check_swap_attach(case) -> None:
    imgs = to_imgs(case["inputs"]["frames"])
    masks = case["inputs"]["masks"].long()
    new_imgs, new_masks = swap_and_attach(imgs, masks)
    assert torch.equal(new_imgs, case["outputs"]["imgs"])
    assert torch.equal(new_masks, case["outputs"]["masks"].long())
    assert new_masks.dtype == torch.int64


@cases("emvos")
def test_parity(case_path, model):
    dispatch(load_case(case_path), {
        "encoder": lambda c: check_encoder(model, c),
        "video": lambda c: check_video(model, c),
        "train_step": lambda c: check_train_step(model, c),
        "swap_attach": check_swap_attach,
    })
