"""The scratch-training switches --deep-supervision, --matching-supervision, --teacher-forcing and --cosine-lr (off
by default: the official recipe)."""
from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.runtime.errors import UserError
from common.training import TrainConfig, Trainer
from common.training import matching_supervision
from common.training.deep_supervision import WEIGHT, DeepSupervision
from common.training.matching_supervision import MatchingSupervision
from tests.test_training import _Clips as ToyClips
from tests.test_training import make_toy, toy_config
from tests.test_training import toy_forward as pixel_forward


class _Decoder(nn.Module):
    """The shape of the papers' decoders: 2-channel maps at 1/8 (deconv1) and 1/4 (deconv2) on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.deconv1 = nn.Conv2d(3, 2, 1)  # a side branch here: it does not feed the final logits
        self.deconv2 = nn.Conv2d(3, 2, 1)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.deconv1(F.avg_pool2d(x, 8))
        self.deconv2(F.avg_pool2d(x, 4))
        return self.head(x)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.decoder = _Decoder()


def toy_forward(model, imgs, masks):
    """One decoder call per frame 1..L-1, as the papers' training forwards (one object per clip)."""
    return torch.stack([model.decoder(imgs[:, i]) for i in range(1, imgs.shape[1])], dim=1)


def box_masks(batch: int, frames: int, size: int, rows: slice, cols: slice) -> torch.Tensor:
    """int64 `[batch, frames, 1, size, size]` clip masks: the object is the same box on every frame."""
    masks = torch.zeros(batch, frames, 1, size, size, dtype=torch.long)
    masks[..., rows, cols] = 1
    return masks


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_the_switch_trains_the_coarse_maps(tmp_path, deep_supervision):
    model = _Toy()
    before = model.decoder.deconv1.weight.detach().clone()
    config = TrainConfig(save_name="toy", epochs=1, batch_size=2, save_step=1, val_step=1, num_workers=0, lr=1e-2,
                         deep_supervision=deep_supervision)
    Trainer(model, toy_forward, ToyClips(), config, tmp_path, torch.device("cpu")).train()
    # off (official): the side branch gets no gradient; on: its loss trains it
    assert torch.equal(model.decoder.deconv1.weight, before) is not deep_supervision
    assert not torch.equal(model.decoder.head.weight, _Toy().decoder.head.weight)


def test_loss_is_the_coarse_maps_cross_entropy_on_the_padded_masks():
    model = _Toy()
    supervision = DeepSupervision(model)
    # 40x40 frames are padded to 48x48 by the decoders: the maps are 6x6 and 12x12 of the padded frame
    imgs = torch.rand(2, 3, 3, 48, 48)
    masks = box_masks(2, 3, 40, slice(4, 20), slice(8, 30))
    with supervision.collecting():
        toy_forward(model, imgs, masks)
    assert [tuple(m.shape[-2:]) for m in supervision.maps] == [(6, 6), (12, 12)] * 2
    maps = list(supervision.maps)
    loss = supervision.loss(masks)
    padded = F.pad(masks[:, 1:].flatten(0, 1).float(), [4, 4, 4, 4], mode="reflect").view(2, 2, 1, 48, 48)
    expected = 0.0
    for i, coarse in enumerate(maps):
        target = F.avg_pool2d(padded[:, i // 2], 48 // coarse.shape[-1])[:, 0] > 0.5
        expected += F.cross_entropy(coarse, target.long())
    assert torch.allclose(loss, WEIGHT * expected / 2)
    assert supervision.maps == []  # consumed


def test_nothing_is_kept_outside_the_training_forward():
    model = _Toy()
    supervision = DeepSupervision(model)
    with supervision.collecting():
        toy_forward(model, torch.rand(1, 2, 3, 16, 16), None)
    assert len(supervision.maps) == 2
    supervision.maps.clear()
    toy_forward(model, torch.rand(1, 4, 3, 16, 16), None)  # validation, a later stage: no hook left behind
    assert supervision.maps == [] and not model.decoder.deconv1._forward_hooks


def test_a_model_without_coarse_maps_is_refused():
    with pytest.raises(UserError, match="--deep-supervision: this model has no decoder.deconv1"):
        DeepSupervision(nn.Sequential(nn.Conv2d(3, 2, 1)))


def _paper(name: str):
    if name == "bmvos":
        from bmvos.model import BMVOS
        from bmvos.train import bmvos_forward_clip
        return BMVOS, bmvos_forward_clip
    if name == "emvos":
        from emvos.model import EMVOS
        from emvos.train import emvos_forward_clip
        return EMVOS, emvos_forward_clip
    from tbd.model import TBD
    from tbd.train import tbd_forward_clip
    return TBD, tbd_forward_clip


@pytest.mark.parametrize("paper", ["bmvos", "emvos", "tbd"])
def test_each_paper_gives_the_16th_stage_a_direct_loss(paper):
    build, forward_clip = _paper(paper)
    torch.manual_seed(0)
    model = build()
    supervision = DeepSupervision(model)
    imgs = torch.rand(2, 3, 3, 32, 32)
    masks = box_masks(2, 3, 32, slice(8, 24), slice(4, 20))
    with supervision.collecting():
        forward_clip(model, imgs, masks)
    assert [tuple(m.shape[-2:]) for m in supervision.maps] == [(4, 4), (8, 8)] * 2  # deconv1, deconv2 per frame
    supervision.loss(masks).backward()
    # the 1/16 stage, where the matching scores and the previous mask enter, is reached by this loss alone
    assert model.vos.decoder.blend1.conv.weight.grad.abs().sum() > 0


# --- --matching-supervision: EMVOS's cosine similarities against the mask -------------------------------------------

class _Matcher(nn.Module):
    """Declares two (bg, fg) similarity pairs among its 5 output channels, as EMVOS's matcher does among its 8."""
    SIMILARITY_PAIRS = ((0, 1), (3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class _Matching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.matcher = _Matcher()


def test_matching_loss_is_the_declared_pairs_cross_entropy_at_a_16th():
    model = _Matching()
    supervision = MatchingSupervision(model)
    # 40x40 frames are padded to 48x48 by the decoders: the matching runs on its 3x3 cells
    masks = box_masks(2, 3, 40, slice(4, 20), slice(8, 30))
    raw = torch.randn(2, 2, 5, 3, 3)
    with supervision.collecting():
        scores = [model.matcher(raw[:, i]) for i in range(2)]
    loss = supervision.loss(masks)
    padded = F.pad(masks[:, 1:].flatten(0, 1).float(), [4, 4, 4, 4], mode="reflect").view(2, 2, 1, 48, 48)
    expected = 0.0
    for i, score in enumerate(scores):
        target = (F.avg_pool2d(padded[:, i], 16)[:, 0] > 0.5).long()
        for bg, fg in _Matcher.SIMILARITY_PAIRS:  # channel 2 is not a pair: it takes no part
            expected += F.cross_entropy(matching_supervision.TEMPERATURE * score[:, [bg, fg]], target)
    assert torch.allclose(loss, matching_supervision.WEIGHT * expected / 2)
    assert supervision.scores == [] and not model.matcher._forward_hooks  # consumed; nothing listens afterwards


def test_only_a_matcher_that_declares_its_similarities_is_supervised():
    from tbd.model import TBD
    for model in (nn.Sequential(nn.Conv2d(3, 2, 1)), TBD()):  # TBD's matcher declares none
        with pytest.raises(UserError, match="--matching-supervision: this model has no matcher that declares"):
            MatchingSupervision(model)


@pytest.mark.parametrize("matching", [False, True])
def test_emvos_matching_keys_get_the_matching_loss(matching):
    build, forward_clip = _paper("emvos")
    torch.manual_seed(0)
    model = build()
    imgs = torch.rand(2, 3, 3, 32, 32)
    masks = box_masks(2, 3, 32, slice(8, 24), slice(4, 20))
    supervision = MatchingSupervision(model)
    with supervision.collecting():
        scores = forward_clip(model, imgs, masks)
    loss = supervision.loss(masks)
    assert loss > 0
    # the decoder's loss alone and with the matching loss: the cosine key projection gets a different gradient
    model.zero_grad()
    (F.cross_entropy(scores.flatten(0, 1), masks[:, 1:, 0].flatten(0, 1)) + (loss if matching else 0)).backward()
    gradient = model.vos.matcher.conv1.conv.weight.grad.clone()
    model.zero_grad()
    scores = forward_clip(model, imgs, masks)
    F.cross_entropy(scores.flatten(0, 1), masks[:, 1:, 0].flatten(0, 1)).backward()
    assert torch.equal(gradient, model.vos.matcher.conv1.conv.weight.grad) is not matching


@pytest.mark.parametrize("matching_supervision", [False, True])
def test_the_trainer_adds_the_matching_loss_with_the_switch(tmp_path, monkeypatch, matching_supervision):
    added = []
    real_loss = MatchingSupervision.loss
    monkeypatch.setattr(MatchingSupervision, "loss", lambda self, masks: added.append(1) or real_loss(self, masks))

    def forward(model, imgs, masks):
        for i in range(1, imgs.shape[1]):
            model.matching.matcher(torch.zeros(imgs.shape[0], 2, 1, 1))
        return toy_forward(model, imgs, masks)

    model = _Toy()
    model.matching = _Matching()
    model.matching.matcher.SIMILARITY_PAIRS = ((0, 1),)
    config = TrainConfig(save_name="toy", epochs=1, batch_size=2, save_step=1, val_step=1, num_workers=0,
                         matching_supervision=matching_supervision)
    Trainer(model, forward, ToyClips(), config, tmp_path, torch.device("cpu")).train()
    assert bool(added) is matching_supervision


# --- --teacher-forcing: the training state follows the clip's masks -------------------------------------------------

@pytest.mark.parametrize("paper", ["bmvos", "emvos", "tbd"])
def test_teacher_forcing_makes_the_state_follow_the_masks(paper):
    build, forward_clip = _paper(paper)
    torch.manual_seed(0)
    model = build().eval()
    imgs = torch.rand(2, 3, 3, 32, 32)
    masks = box_masks(2, 3, 32, slice(4, 16), slice(4, 20))
    moved = masks.clone()
    moved[:, 1] = 0
    moved[:, 1, :, 16:30, 12:28] = 1  # only frame 1's mask differs
    with torch.no_grad():
        official = [forward_clip(model, imgs, m) for m in (masks, moved)]
        forced = [forward_clip(model, imgs, m, teacher_forcing=True) for m in (masks, moved)]
    # upstream, frame 1's mask is only a target: the predictions do not depend on it
    assert torch.equal(official[0], official[1])
    # forced, frame 2 is predicted from a state that followed frame 1's mask; frame 1 itself is not
    assert torch.equal(forced[0][:, 0], forced[1][:, 0]) and torch.equal(forced[0][:, 0], official[0][:, 0])
    assert not torch.allclose(forced[0][:, 1], forced[1][:, 1])


@pytest.mark.parametrize("teacher_forcing", [False, True])
def test_the_trainer_hands_the_switch_to_the_papers_forward(tmp_path, teacher_forcing):
    calls = []

    def forward(model, imgs, masks, **switches):
        calls.append(switches)
        return toy_forward(model, imgs, masks)

    config = TrainConfig(save_name="toy", epochs=1, batch_size=2, save_step=1, val_step=1, num_workers=0,
                         teacher_forcing=teacher_forcing)
    Trainer(_Toy(), forward, ToyClips(), config, tmp_path, torch.device("cpu")).train()
    # off: the official call, which toy forwards without the keyword also accept
    assert calls and all(c == ({"teacher_forcing": True} if teacher_forcing else {}) for c in calls)


def logged_lrs(out_dir) -> dict:
    """{epoch: the learning rates of its optimizer steps} from the stage's CSV log."""
    lrs: dict = {}
    with open(out_dir / "toy_log.csv", newline="") as f:
        for row in csv.DictReader(f):
            lrs.setdefault(int(row["epoch"]), []).append(float(row["lr"]))
    return lrs


@pytest.mark.parametrize("cosine_lr", [False, True])
def test_cosine_lr_falls_along_a_half_cosine_over_the_epochs(tmp_path, cosine_lr):
    trainer = Trainer(make_toy(), pixel_forward, ToyClips(), toy_config(epochs=4, lr=1e-2, cosine_lr=cosine_lr),
                      tmp_path, torch.device("cpu"))
    trainer.train()
    lrs = logged_lrs(tmp_path)
    assert sorted(lrs) == [1, 2, 3, 4] and all(len(set(v)) == 1 for v in lrs.values())  # one lr per epoch
    expected = [1e-2 * (0.5 * (1 + math.cos(math.pi * e / 4)) if cosine_lr else 1.0) for e in range(4)]
    assert [v[0] for _, v in sorted(lrs.items())] == pytest.approx(expected, rel=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1], rel=1e-12)


def test_cosine_lr_follows_the_time_limit_when_it_ends_the_stage_sooner(tmp_path):
    config = toy_config(epochs=100, lr=1e-2, cosine_lr=True, time_limit_s=60.0)
    trainer = Trainer(make_toy(), pixel_forward, ToyClips(), config, tmp_path, torch.device("cpu"))
    trainer.seconds = 45.0          # three quarters of the time limit, 2% of the epochs
    assert trainer.progress(3) == pytest.approx(0.75)
    trainer.seconds = 0.0           # the epochs further along than the clock
    assert trainer.progress(51) == pytest.approx(0.5)
    trainer.seconds = 90.0          # past the limit (the last epoch): the end of the cosine, no further
    assert trainer.progress(3) == 1.0
    trainer.train_epoch(3)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0
