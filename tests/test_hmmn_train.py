"""HMMN training (`python -m hmmn.train`): the clip pipeline keeps frames and masks aligned, the trainer overfits
one generated clip, its checkpoints load into `--init` and `hmmn.eval_davis` unchanged, and bad data ends in
one `error:` line with exit status 2.

Sizes are HMMN's smallest (96x96 crops: its /8 top-32 matching needs 32 cells at /16); one step takes ~2 s
on one CPU thread, so the overfit run is the only real training here and the round trip reuses its output.
"""
from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.palette import write_label_png
from common.runtime.errors import UserError
from hmmn import train as hmmn_train
from hmmn.model import HMMN, FineAttention, TopkGuidedMemory, soft_aggregate_logits
from hmmn.training import (MAIN_RECIPE, ReadoutSupervision, _memorize, _object_logits, bootstrapped_ce, clip_logits,
                           dice_loss, unclamped_aggregate_logits)
from hmmn.training_data import STATIC, VIDEO, ClipAugmenter, VideoClips, davis_videos

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SIZE = 96
BRIGHT = 0.7  # objects are white, the background black, affine fill grey (0.46): any colour jitter keeps this split

# The overfit settings, each a real flag that is off by default: HMMN's smallest crop, no augmentation, no
# read-out dropout, a fixed skip of 1, BatchNorm in train mode (a random start; the official recipe freezes it) and
# 3x the official learning rate (higher rates saturate the released soft aggregation's clamp and stop learning).
OVERFIT_FLAGS = ["--crop", str(SIZE), "--no-augment", "--memory-dropout", "0", "--max-skip", "1", "--bn-train",
                 "--lr", "3e-5", "--batch-size", "1", "--clips-per-epoch", "1"]
OVERFIT_EPOCHS = 20


# --- generated data ------------------------------------------------------------------------------------------------

def white_objects(t: int, height: int, width: int, n_objects: int) -> np.ndarray:
    """Instance ids of frame `t`: an L-shaped object moving right (asymmetric, so a flip shows) and, for two
    objects, a disc moving down."""
    labels = np.zeros((height, width), np.uint8)
    x = 8 + 5 * t
    labels[12:64, x:x + 26] = 1
    labels[40:64, x:x + 48] = 1
    if n_objects > 1:
        yy, xx = np.mgrid[:height, :width]
        labels[(yy - (20 + 4 * t)) ** 2 + (xx - (width - 26)) ** 2 < 14 ** 2] = 2
    return labels


def frame_pair(t: int, height: int, width: int, n_objects: int):
    labels = white_objects(t, height, width, n_objects)
    rgb = np.where(labels[..., None] > 0, 255, 0).astype(np.uint8).repeat(3, axis=2)
    return Image.fromarray(rgb), Image.fromarray(labels, mode="L")


def write_davis(root: Path, n_frames: int = 3, n_objects: int = 1, empty: bool = False) -> Path:
    """DAVIS 2017 layout, one video in train and val (white objects on black, 96x96)."""
    name = "clip"
    for t in range(n_frames):
        img, labels = frame_pair(t, SIZE, SIZE, n_objects)
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
        img.save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=95)
        write_label_png(root / "Annotations" / "480p" / name / f"{t:05d}.png",
                        np.zeros_like(np.array(labels)) if empty else np.array(labels))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    for split in ("train", "val"):
        (root / "ImageSets" / "2017" / f"{split}.txt").write_text(name + "\n")
    return root


def overlap(imgs: torch.Tensor, masks: torch.Tensor) -> float:
    """IoU of 'the image is bright' and 'the mask holds an object' over a clip (1 = perfectly aligned)."""
    bright = imgs.mean(dim=1) > BRIGHT            # [L, H, W]
    labelled = masks.reshape(bright.shape) > 0
    return float((bright & labelled).sum()) / max(1.0, float((bright | labelled).sum()))


# --- (a) the data pipeline keeps frames and masks aligned ------------------------------------------------------------

@pytest.mark.parametrize("static", [False, True], ids=["video", "static"])
@pytest.mark.parametrize("forced", [{}, {"flip_p": 1.0}, {"grayscale_p": 1.0}, {"flip_p": 1.0, "grayscale_p": 1.0}],
                         ids=["random", "flip", "grey", "flip+grey"])
def test_augmentation_keeps_frames_and_masks_aligned(static, forced):
    base = STATIC if static else VIDEO
    augment = ClipAugmenter(replace(base.scaled(crop=SIZE), **forced), static=static)
    frames = [frame_pair(t, 120, 160, n_objects=2) for t in range(3)]
    rng = random.Random(7)
    for _ in range(6):  # several draws of every random transform
        imgs, labels = augment([frames[0]] * 3 if static else frames, rng)
        assert imgs.shape == (3, 3, SIZE, SIZE) and labels.shape == (3, SIZE, SIZE)
        assert (labels > 0).sum() > 500  # the crop keeps enough object for the check to mean something
        assert overlap(imgs, labels) >= 0.85  # only interpolated edge pixels may differ (measured >= 0.9)
        # the check itself sees a misalignment: the same clip with the image flipped and the mask not
        assert overlap(imgs.flip(-1), labels) < 0.5


def test_video_clips_keep_target_and_second_object_aligned(tmp_path):
    root = write_davis(tmp_path / "DAVIS", n_frames=5, n_objects=2)
    clips = VideoClips(davis_videos(root), VIDEO.scaled(crop=SIZE), clips_per_epoch=8, rng=random.Random(3))
    seen = set()
    for i in range(8):
        item = clips[i]
        assert item["imgs"].shape == (3, 3, SIZE, SIZE) and item["masks"].shape == (3, 1, SIZE, SIZE)
        assert overlap(item["imgs"], item["masks"][:, 0]) >= 0.8  # JPEG edges, then the augmentation
        assert (item["masks"][0] == 1).any()  # the target is in frame 0
        seen |= set(item["masks"].unique().tolist())
    assert seen == {0, 1, 2}  # both objects of the video are trained, one as the "other object"


# --- the batched training forward is the network's own ---------------------------------------------------------------

def test_training_forward_matches_the_network():
    torch.manual_seed(0)
    model = HMMN().eval()
    frame0, frame1 = torch.rand(2, 1, 3, SIZE, SIZE)
    masks = torch.zeros(1, 3, SIZE, SIZE)
    masks[0, 1, 10:40, 10:50] = 1
    masks[0, 2, 60:90, 50:80] = 1
    masks[0, 0] = 1 - masks[0, 1] - masks[0, 2]
    with torch.no_grad():
        model.Memory.reset()
        expected, _ = model.object_probabilities(frame1, *model.memorize(frame0, masks, 2), 2)
        model.Memory.reset()
        passes = torch.arange(2)  # the clip's two objects
        memory = _memorize(model, frame0, masks[:, 1:], passes)
        got = torch.softmax(_object_logits(model, frame1, passes // 2, *memory), dim=1)[:, 1]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_clip_without_a_second_object_gets_no_pass_for_it_and_the_networks_own_logits():
    torch.manual_seed(0)
    model = HMMN().eval()
    imgs = torch.rand(2, 2, 3, SIZE, SIZE)
    # clip 0 has one object, clip 1 two: three passes (clip 0's target, clip 1's target and second object)
    masks = torch.from_numpy(np.stack([[white_objects(t, SIZE, SIZE, n) for t in range(2)] for n in (1, 2)]))
    masks = masks.long()[:, :, None]
    passes = []
    handle = model.Decoder.register_forward_hook(lambda module, inputs, output: passes.append(output.shape[0]))
    with torch.no_grad():
        logits = clip_logits(model, imgs, masks)
    handle.remove()
    assert passes == [3]
    for clip, n in ((0, 1), (1, 2)):
        onehot = torch.stack([masks[clip, 0, 0] == k for k in range(n + 1)]).float()[None]
        with torch.no_grad():
            model.Memory.reset()
            memory = model.memorize(imgs[clip, 0:1], onehot, n)
            probs, _ = model.object_probabilities(imgs[clip, 1:2], *memory, n)
        expected = soft_aggregate_logits(probs)[0]
        torch.testing.assert_close(logits[clip, 0, :n + 1], expected, rtol=1e-4, atol=1e-4)


def test_teacher_forcing_memorises_the_ground_truth_not_the_prediction():
    torch.manual_seed(0)
    model = HMMN().eval()
    imgs = torch.rand(1, 3, 3, SIZE, SIZE)
    masks = torch.from_numpy(np.stack([white_objects(t, SIZE, SIZE, 2) for t in range(3)])).long()[None, :, None]
    corrupt = {"calls": 0}

    def corrupt_frame_1(module, inputs, output):  # the decoder's first call of a clip predicts frame 1
        corrupt["calls"] += 1
        return output * -5.0 + 3.0 if corrupt["calls"] % 2 == 1 else None

    def frame_2(teacher_forcing: bool, corrupted: bool) -> torch.Tensor:
        handle = model.Decoder.register_forward_hook(corrupt_frame_1) if corrupted else None
        with torch.no_grad():
            logits = clip_logits(model, imgs, masks, teacher_forcing=teacher_forcing)
        if handle is not None:
            handle.remove()
        return logits[:, 1]

    # forced, frame 2 is read from frame 1's ground truth: what was predicted for frame 1 does not matter
    torch.testing.assert_close(frame_2(True, corrupted=True), frame_2(True, corrupted=False), rtol=0, atol=0)
    # the recipe's forward memorises the prediction, so the same corruption reaches frame 2
    assert (frame_2(False, corrupted=True) - frame_2(False, corrupted=False)).abs().max() > 1e-3


def test_unclamped_aggregation_equals_the_released_one_and_keeps_the_gradient_the_clamp_cuts():
    torch.manual_seed(0)
    object_logits = torch.randn(2, 2, 2, 5, 5) * 2  # |d| well inside the clamp's range
    present = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # the second clip has no second object
    probs = torch.softmax(object_logits, dim=2)[:, :, 1] * present.view(2, 2, 1, 1)
    released = torch.cat([soft_aggregate_logits(probs[i]) for i in range(2)])
    torch.testing.assert_close(unclamped_aggregate_logits(object_logits, present), released, rtol=1e-4, atol=1e-4)

    # a pixel of the target predicted background with d = -40: the clamp holds it at 1e-7 and passes no gradient
    wrong = torch.zeros(1, 1, 2, 1, 1)
    wrong[0, 0, 0] = 40.0
    target = torch.tensor([[[1]]])
    gradients = {}
    for name, aggregate in (("released", lambda x: soft_aggregate_logits(torch.softmax(x, dim=2)[0, :, 1])),
                            ("unclamped", lambda x: unclamped_aggregate_logits(x, torch.ones(1, 1)))):
        x = wrong.clone().requires_grad_()
        torch.nn.functional.cross_entropy(aggregate(x), target).backward()
        gradients[name] = x.grad.abs().max().item()
    assert gradients["released"] == 0.0
    assert gradients["unclamped"] > 0.5


def test_readout_supervision_scores_the_attention_share_on_each_objects_cells():
    # one 2-frame clip of 32x32 (2x2 cells at /16); the target fills cell 0 and half of cell 2 in frame 0 and
    # cell 1 in frame 1; the second object exists in no frame
    masks = torch.zeros(1, 2, 1, 32, 32, dtype=torch.long)
    masks[0, 0, 0, :16, :16] = 1
    masks[0, 0, 0, 16:, :8] = 1
    masks[0, 1, 0, :16, 16:] = 1
    torch.manual_seed(0)
    attention = torch.softmax(torch.randn(1, 4, 4), dim=1)  # [passes, memory cells, query cells]: the target's
    supervision = ReadoutSupervision()
    supervision.log_attentions.append(attention.log())
    got = supervision.loss(masks)
    share = attention[0, 0] + 0.5 * attention[0, 2]  # the target's memory cells, weighted by their coverage
    target = torch.tensor([0.0, 1.0, 0.0, 0.0])      # query cells mostly covered by the target
    expected = -(target * share.log() + (1 - target) * (1 - share).log()).mean()
    torch.testing.assert_close(got, expected)
    assert supervision.log_attentions == []  # consumed: the next clip starts empty

    # a batch's rows are its passes (`clip_logits`'): clip 0's target, clip 1's target, clip 1's second object;
    # its loss is their mean
    with_second = masks.clone()
    with_second[0, 0, 0, 16:, 8:] = 2
    second_alone = (with_second == 2).long()  # the second object as a clip's only one
    other = torch.softmax(torch.randn(1, 4, 4), dim=1)
    supervision.log_attentions.append(torch.cat([attention, attention, other]).log())
    alone = ReadoutSupervision()
    alone.log_attentions.append(other.log())
    expected = (2 * got + alone.loss(second_alone)) / 3
    torch.testing.assert_close(supervision.loss(torch.cat([masks, with_second])), expected)

    # a saturated attention, all on a background cell, still gets a gradient (the share itself would not)
    scores = torch.zeros(1, 4, 4)
    scores[:, 3] = 200.0
    scores.requires_grad_()
    supervision.log_attentions.append(torch.log_softmax(scores, dim=1))
    supervision.loss(masks).backward()
    # the target's query cell is pushed off the background cell at full strength (1, over 4 query cells)
    assert scores.grad[0, 3, 1].item() == pytest.approx(0.25, abs=1e-4)


def test_matching_labels_spread_each_query_cells_attention_over_the_memory_cells_of_its_label():
    # one 2-frame clip of 32x32 (2x2 cells at /16): frame 0 holds the target in cell 0 and the second object in
    # cell 1 (three quarters of it: a majority), frame 1 the target in cell 1 and the second object in cell 2
    masks = torch.zeros(1, 2, 1, 32, 32, dtype=torch.long)
    masks[0, 0, 0, :16, :16] = 1
    masks[0, 0, 0, :12, 16:] = 2
    masks[0, 1, 0, :16, 16:] = 1
    masks[0, 1, 0, 16:, :16] = 2
    torch.manual_seed(0)
    attention = torch.softmax(torch.randn(2, 4, 4), dim=1)  # [objects, memory cells, query cells]
    supervision = ReadoutSupervision(weight=0.0, label_weight=1.0)
    supervision.log_attentions.append(attention.log())
    got = supervision.loss(masks)
    # memory labels (target, second, background, background) against query labels (background, target, second,
    # background): query cells 0 and 3 spread over memory cells 2 and 3, 1 over memory cell 0, 2 over cell 1
    log = attention.log()
    per_cell = torch.stack([-(log[:, 2, 0] + log[:, 3, 0]) / 2, -log[:, 0, 1], -log[:, 1, 2],
                            -(log[:, 2, 3] + log[:, 3, 3]) / 2], dim=1)
    torch.testing.assert_close(got, per_cell.mean())  # both passes: the labels are the same in each
    # the share and the labels add up when both are on
    both = ReadoutSupervision(label_weight=1.0)
    both.log_attentions.append(attention.log())
    share = ReadoutSupervision()
    share.log_attentions.append(attention.log())
    torch.testing.assert_close(both.loss(masks), share.loss(masks) + got)

    # a query cell whose label no memory cell has takes no part (here the second object, missing from frame 0,
    # and so without a pass of its own)
    masks[0, 0, 0, :12, 16:] = 0
    supervision.log_attentions.append(attention[:1].log())
    expected = torch.stack([-(log[:1, 1, 0] + log[:1, 2, 0] + log[:1, 3, 0]) / 3, -log[:1, 0, 1],
                            -(log[:1, 1, 3] + log[:1, 2, 3] + log[:1, 3, 3]) / 3], dim=1).mean()
    torch.testing.assert_close(supervision.loss(masks), expected)


def test_fine_matching_supervision_scores_the_top_k_reads_share_per_query_pixel():
    # a 2-frame clip of 32x32 read at /8 (4x4 pixels, 2x2 /16 cells of 2x2): the target covers /8 pixel (0, 0)
    # and half of (0, 1) in frame 0 and pixel (3, 3) in frame 1; there is no second object
    masks = torch.zeros(1, 2, 1, 32, 32, dtype=torch.long)
    masks[0, 0, 0, :8, :12] = 1
    masks[0, 1, 0, 24:, 24:] = 1
    memory_coverage = torch.zeros(16)
    memory_coverage[0], memory_coverage[1] = 1.0, 0.5

    def every_memory_pixel(memory: torch.Tensor, channels: int) -> torch.Tensor:
        # a read whose candidates are all 16 memory pixels for every /16 cell
        flat = memory.flatten(2).transpose(1, 2)  # [passes, 16, channels]
        return flat[:, None, None].expand(-1, 2, 2, -1, -1)

    torch.manual_seed(0)
    log_attention = torch.log_softmax(torch.randn(1, 2, 2, 2, 2, 16), dim=-1)  # [passes, gh, gw, i, j, pixels]
    supervision = ReadoutSupervision(weight=0.0, fine_weight=1.0)
    supervision.log_attentions.append(torch.zeros(1, 4, 4))  # the /16 read's, unused without its weight
    fine = FineAttention(log_attention, every_memory_pixel)
    supervision.fine_attentions += [fine, fine]  # the /8 and the /4 read of the one predicted frame, here the same
    got = supervision.loss(masks)
    assert supervision.fine_attentions == []  # consumed with the /16 ones
    losses = []
    for y in range(4):
        for x in range(4):
            share = (log_attention[0, y // 2, x // 2, y % 2, x % 2].exp() * memory_coverage).sum()
            losses.append(-(share.log() if (y, x) == (3, 3) else (1 - share).log()))
    torch.testing.assert_close(got, 2 * torch.stack(losses).mean())  # one pass: the clip has no second object
    supervision.log_attentions.append(torch.zeros(1, 4, 4))
    supervision.fine_attentions.append(fine)
    with pytest.raises(RuntimeError, match="expected 2 /8 and /4 attentions, got 1"):
        supervision.loss(masks)


def test_a_top_k_reads_fine_attention_is_the_one_it_reads_with():
    torch.manual_seed(0)
    keys, values, query = torch.randn(2, 8, 2, 8, 8), torch.randn(2, 5, 2, 8, 8), torch.randn(2, 8, 8, 8)
    guide = torch.softmax(torch.randn(2, 2 * 4, 4), dim=1)  # 2 memory frames of 2x2 /16 cells, 4 query cells
    fine: list = []
    read, _, _ = TopkGuidedMemory(3)(keys, values, query, guide, log_attentions=fine)
    [entry] = fine
    assert entry.log_attention.shape == (2, 2, 2, 4, 4, 3 * 16)  # 3 cells of 4x4 pixels per query cell
    again = torch.einsum("bhwnc,bhwijn->bchiwj", entry.candidates(values, 5), entry.log_attention.exp())
    torch.testing.assert_close(again.reshape(read.shape), read)


def test_no_bootstrap_scores_every_pixel_throughout():
    from common.training.schedule import Overrides
    for stage in ("coco", "main"):
        plans = {}
        for name, argv in (("recipe", []), ("switch", ["--no-bootstrap", "--lr", "3e-4"])):
            args = hmmn_train.build_parser().parse_args(argv)
            plans[name] = hmmn_train.plan(stage, Overrides.from_args(args), args).recipe
        recipe, switch = plans["recipe"], plans["switch"]
        positions = [i / 20 for i in range(21)]
        assert recipe.top_p_at(1.0) == pytest.approx(0.15)  # the recipe bootstraps...
        assert [switch.top_p_at(f) for f in positions] == [1.0] * len(positions)  # ...the switch never does
        assert (switch.lr, switch.decay_at) == (3e-4, recipe.decay_at)  # and changes nothing else


def test_warmup_raises_the_learning_rate_over_each_stages_first_steps(tmp_path):
    from common.training.schedule import Overrides
    args = hmmn_train.build_parser().parse_args(["--warmup-steps", "4", "--lr", "3e-4"])
    recipe = hmmn_train.plan("main", Overrides.from_args(args), args).recipe
    assert [recipe.lr_at(0.0, step) for step in range(6)] == pytest.approx([0.75e-4, 1.5e-4, 2.25e-4] + [3e-4] * 3)
    assert recipe.lr_at(0.9, 0) == pytest.approx(0.25 * 3e-5)  # on top of the recipe's decay
    assert MAIN_RECIPE.lr_at(0.0, 0) == MAIN_RECIPE.lr  # the recipe itself has none
    # the trainer asks for each step's rate: the log's first rows climb (OVERFIT_FLAGS' lr is 3e-5)
    hmmn_train.main(train_args(write_davis(tmp_path / "DAVIS"), tmp_path / "out", 3, "--warmup-steps", "2"))
    with open(tmp_path / "out" / "main_log.csv") as f:
        rates = [float(row["lr"]) for row in csv.DictReader(f)]
    assert rates == pytest.approx([1.5e-5, 3e-5, 3e-5])


def test_cosine_lr_replaces_the_recipes_step_decay_by_a_half_cosine(tmp_path):
    from common.training.schedule import Overrides
    args = hmmn_train.build_parser().parse_args(["--cosine-lr", "--lr", "4e-4", "--warmup-steps", "2"])
    recipe = hmmn_train.plan("main", Overrides.from_args(args), args).recipe
    positions = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
    assert [recipe.lr_at(f, 10) for f in positions] == pytest.approx(
        [4e-4, 4e-4 * (1 + math.cos(math.pi / 4)) / 2, 2e-4, 4e-4 * (1 - math.cos(math.pi / 4)) / 2,
         4e-4 * (1 - math.cos(math.pi / 10)) / 2, 0.0])  # no tenfold step at the recipe's 5/6
    assert recipe.lr_at(0.5, 0) == pytest.approx(1e-4)  # the warm-up still ramps the first steps
    assert MAIN_RECIPE.lr_at(0.9) == pytest.approx(MAIN_RECIPE.lr * MAIN_RECIPE.gamma)  # the recipe's own decay
    # the trainer asks for each step's rate along the stage (4 epochs of 1 step: 0, 1/4, 1/2, 3/4 of the way)
    hmmn_train.main(train_args(write_davis(tmp_path / "DAVIS"), tmp_path / "out", 4, "--cosine-lr"))
    with open(tmp_path / "out" / "main_log.csv") as f:
        rates = [float(row["lr"]) for row in csv.DictReader(f)]
    assert rates == pytest.approx([3e-5 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])


def test_zero_init_residual_starts_each_encoder_bottleneck_as_the_identity():
    from torchvision.models.resnet import Bottleneck
    torch.manual_seed(0)
    plain = hmmn_train.build_model("scratch")
    torch.manual_seed(0)
    zeroed = hmmn_train.build_model("scratch", zero_residual=True)
    before, after = plain.state_dict(), zeroed.state_dict()
    # the same random start but for the last BatchNorm scale of the 13 bottlenecks of each encoder
    changed = sorted(key for key in before if not torch.equal(before[key], after[key]))
    assert len(changed) == 26 and all(key.endswith(".bn3.weight") for key in changed)
    assert {key.split(".")[0] for key in changed} == {"Encoder_M", "Encoder_Q"}
    assert all(not after[key].any() for key in changed)
    # so each block passes its shortcut through (BatchNorm with its initial statistics)
    x = torch.randn(2, 1024, 6, 6)
    with torch.no_grad():
        for model in (plain, zeroed):
            block = model.Encoder_Q.res4[1]
            assert isinstance(block, Bottleneck) and block.downsample is None
            assert torch.equal(block(x), x.relu()) == (model is zeroed)


def test_the_switches_reach_the_training_forward_and_loss(tmp_path, monkeypatch):
    from hmmn import training
    seen, readout_losses, dice_losses = [], [], []
    real_forward, real_loss, real_dice = training.clip_logits, training.ReadoutSupervision.loss, training.dice_loss

    def spy(model, imgs, masks, teacher_forcing=False, unclamped=False, log_attentions=None, fine_attentions=None):
        seen.append((unclamped, log_attentions is not None, fine_attentions is not None))
        return real_forward(model, imgs, masks, teacher_forcing, unclamped, log_attentions, fine_attentions)

    def loss_spy(self, masks):
        readout_losses.append((self.weight, self.label_weight, self.fine_weight, real_loss(self, masks)))
        return readout_losses[-1][-1]

    def dice_spy(logits, masks):
        dice_losses.append(real_dice(logits, masks))
        return dice_losses[-1]

    monkeypatch.setattr(training, "clip_logits", spy)
    monkeypatch.setattr(training.ReadoutSupervision, "loss", loss_spy)
    monkeypatch.setattr(training, "dice_loss", dice_spy)
    davis = write_davis(tmp_path / "DAVIS")
    readout_switches = ("--matching-supervision", "--matching-labels", "--fine-matching-supervision")
    switches = ([], ["--unclamped-aggregation"], ["--dice-loss"], *([flag] for flag in readout_switches))
    for index, switch in enumerate(switches):
        seen.clear()
        readout_losses.clear()
        dice_losses.clear()
        hmmn_train.main(train_args(davis, tmp_path / f"out{index}", 1, *switch))
        # one optimizer step, through the aggregation the flag asks for, with the read-out loss when asked: its
        # one term that the flag names, the /8 and /4 attentions collected only for the fine one
        readout = any(flag in switch for flag in readout_switches)
        assert seen == [("--unclamped-aggregation" in switch, readout, "--fine-matching-supervision" in switch)]
        assert len(readout_losses) == readout
        for *weights, loss in readout_losses:
            assert weights == [1.0 if flag in switch else 0.0 for flag in readout_switches]
            assert loss.requires_grad and loss > 0
        assert len(dice_losses) == ("--dice-loss" in switch)
        assert all(loss.requires_grad and loss > 0 for loss in dice_losses)


def test_bootstrapped_loss_scores_the_hardest_pixels():
    logits = torch.zeros(1, 1, 3, 4, 4)
    logits[0, 0, 1] = 5.0  # predicts the target everywhere
    masks = torch.ones(1, 2, 1, 4, 4, dtype=torch.long)
    masks[0, 1, 0, 0, :2] = 0  # 2 of 16 pixels are background: the wrong ones
    full, top = bootstrapped_ce(logits, masks, 1.0), bootstrapped_ce(logits, masks, 0.125)
    assert top > full  # the top 12.5 % are exactly the two misclassified pixels
    wrong = torch.nn.functional.cross_entropy(logits[0, 0, :2, 0, 0][None], torch.tensor([0]))
    torch.testing.assert_close(top, wrong)


def test_dice_loss_counts_each_object_alike_and_leaves_out_an_absent_one():
    # frame 1 of an 8x8 clip: the target is the top six rows (48 pixels), the second object a 2x2 block below them;
    # the prediction gives the target all of it and the block as well: the second object is missed
    masks = torch.zeros(2, 2, 1, 8, 8, dtype=torch.long)
    masks[:, :, 0, :6] = 1
    masks[0, :, 0, 6:, :2] = 2  # clip 1 has no second object: its block is background
    logits = torch.full((2, 1, 3, 8, 8), -30.0)
    logits[:, 0, 0] = 30.0
    logits[:, 0, 1, :6] = logits[:, 0, 1, 6:, :2] = 60.0
    logits[1, 0, 2, 6:, 2:] = 90.0  # clip 1's absent object: never in its softmax
    target = 1 - (2 * 48 + 1) / (52 + 48 + 1)  # in both clips: its 48 pixels and the block's 4 more
    missed = 1 - (0 + 1) / (0 + 4 + 1)
    expected = ((target + missed) / 2 + target) / 2  # per clip the mean of its objects, then of the clips
    torch.testing.assert_close(dice_loss(logits, masks), torch.tensor(expected))
    perfect = logits.clone()
    perfect[0, 0, 2, 6:, :2] = 90.0  # the block given to the second object
    assert float(dice_loss(perfect[:1], masks[:1])) == pytest.approx(0.0, abs=1e-6)


# --- (b) overfit one clip, (c) the checkpoints' round trip -------------------------------------------------------------

def train_args(davis: Path, out: Path, epochs: int, *extra: str) -> list:
    return ["--stages", "main", "--davis", str(davis), "--output-dir", str(out), "--init", "scratch",
            "--device", "cpu", "--workers", "0", "--epochs", str(epochs), "--save-step", str(epochs),
            "--val-step", "1000", *OVERFIT_FLAGS, *extra]  # no validation: eval_davis scores it below


@pytest.fixture(scope="module")
def overfit(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hmmn_train")
    davis = write_davis(root / "DAVIS")
    out = root / "ckpt"
    hmmn_train.main(train_args(davis, out, OVERFIT_EPOCHS))
    log = [json.loads(line) for line in (out / "main_log.jsonl").read_text().splitlines()]
    return {"davis": davis, "out": out, "log": log, "root": root}


def test_trainer_overfits_one_generated_clip(overfit):
    log = overfit["log"]
    assert [r["epoch"] for r in log] == list(range(1, OVERFIT_EPOCHS + 1))
    assert log[0]["iou"] < 0.5, "a random start should not already segment the clip"
    assert log[-1]["iou"] >= 0.9, [round(r["iou"], 3) for r in log]
    assert log[-1]["loss"] < log[0]["loss"]  # (bootstrapped: the later losses average only the hardest pixels)
    out = overfit["out"]
    assert (out / "main_log.csv").is_file()  # the shared Trainer's per-step log


def test_checkpoint_is_the_official_state_dict_and_round_trips(overfit, tmp_path):
    out, davis = overfit["out"], overfit["davis"]
    ckpt = out / f"main_{OVERFIT_EPOCHS:04d}.pth"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    reference = HMMN().state_dict()
    assert list(state) == list(reference)  # the released network's keys, in order (eval_davis loads it strictly)
    assert all(state[k].shape == reference[k].shape for k in reference)

    # --init PATH: a new run starts from those weights (its first epoch already segments the clip)
    hmmn_train.main(train_args(davis, tmp_path / "finetune", 1, "--init", str(ckpt)))
    first = json.loads((tmp_path / "finetune" / "main_log.jsonl").read_text().splitlines()[0])
    assert first["iou"] >= 0.8

    # the same folder without --resume is refused; hmmn.eval_davis segments and scores with the checkpoint
    with pytest.raises(UserError, match="--resume"):
        hmmn_train.main(train_args(davis, out, OVERFIT_EPOCHS))
    from hmmn import eval_davis
    result = tmp_path / "eval"
    assert eval_davis.main(["-s", "val", "-y", "17", "-D", str(davis), "--weights", str(ckpt), "--output",
                            str(result), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (result / "clip").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_a_time_limited_stage_keeps_the_recipe_shape(tmp_path, monkeypatch):
    """Under --time-limit (the epochs far from done) the lr decay, the bootstrapped loss and the max-skip
    curriculum follow the share of the time spent."""
    from common.training.trainer import TrainConfig
    from hmmn import training
    from hmmn.train import SKIP_CURRICULUM
    from hmmn.training import MAIN_RECIPE, HMMNTrainer

    top_ps = []

    def recording_loss(logits, masks, top_p):
        top_ps.append(top_p)
        return bootstrapped_ce(logits, masks, top_p)

    monkeypatch.setattr(training, "bootstrapped_ce", recording_loss)
    clips = VideoClips(davis_videos(write_davis(tmp_path / "DAVIS", n_objects=2)),
                       VIDEO.scaled(crop=SIZE, enabled=False), clips_per_epoch=1, curriculum=SKIP_CURRICULUM)
    config = TrainConfig(save_name="main", epochs=100_000, batch_size=1, save_step=100_000, val_step=100_000,
                         num_workers=0, bn_train=True, time_limit_s=600.0)
    torch.manual_seed(0)
    trainer = HMMNTrainer(HMMN(), clips, config, tmp_path / "ckpt", torch.device("cpu"), MAIN_RECIPE,
                          memory_dropout=0.0)
    expected = {0.3: (MAIN_RECIPE.lr, 0.15 + 0.85 * (0.4667 - 0.3) / (0.4667 - 0.1333), 20),
                0.95: (MAIN_RECIPE.lr * 0.1, 0.15, 5)}  # (lr, top share of pixels, max skip)
    for share, (lr, top_p, max_skip) in expected.items():
        trainer.seconds = share * config.time_limit_s
        trainer.train_epoch(3)  # epoch 3 of 100,000: by the epochs the stage has barely started
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)
        assert top_ps.pop() == pytest.approx(top_p, abs=1e-3)
        assert clips.max_skip == max_skip


# --- the read-out probe (hmmn.readout_probe) ---------------------------------------------------------------------------

def test_readout_probe_measures_where_the_attention_looks(monkeypatch):
    from hmmn import readout_probe, training
    masks = torch.zeros(1, 3, 1, 32, 32, dtype=torch.long)  # 2x2 cells at /16; the target fills cell 0 throughout
    masks[0, :, 0, :16, :16] = 1

    def forward_looking_at(cell_of, found_as=1):  # every query cell q puts all its attention on cell_of(q)
        def forward(model, imgs, clip_masks, teacher_forcing=False, unclamped=False, log_attentions=None):
            for t in (1, 2):
                attention = torch.full((2, 4 * t, 4), 1e-12)
                attention[:, [cell_of(q) for q in range(4)], range(4)] = 1.0
                log_attentions.append((attention / attention.sum(dim=1, keepdim=True)).log())
            logits = torch.zeros(1, 2, 3, 32, 32)
            logits[:, :, found_as, :16, :16] = 5.0  # the decoder finds the target exactly, as object found_as
            return logits
        return forward

    def probe(cell_of, found_as=1):
        monkeypatch.setattr(training, "clip_logits", forward_looking_at(cell_of, found_as))
        return readout_probe.summarize(readout_probe.probe_clip(None, torch.zeros(1, 3, 3, 32, 32), masks))

    matching = probe(lambda q: q)  # each query cell reads its own place in frame 0
    assert matching["readout_iou"] == 1.0 and matching["decoder_iou"] == 1.0 and matching["foreground_iou"] == 1.0
    assert matching["largest_weight"] == pytest.approx(1.0) and matching["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert matching["uniform_entropy"] == pytest.approx((math.log(4) + math.log(8)) / 2)
    hub = probe(lambda q: 3)  # every query cell copies one background cell
    assert hub["readout_iou"] == 0.0 and hub["decoder_iou"] == 1.0
    swapped = probe(lambda q: q, found_as=2)  # the target found, but given to the second object
    assert swapped["decoder_iou"] == 0.0 and swapped["foreground_iou"] == 1.0


def test_readout_probe_runs_on_a_checkpoint_and_refuses_a_missing_root(tmp_path, capsys):
    from hmmn import readout_probe
    torch.manual_seed(0)
    weights = tmp_path / "seeded.pth"
    torch.save(HMMN().state_dict(), weights)
    davis = write_davis(tmp_path / "DAVIS", n_objects=2)
    result = readout_probe.run(readout_probe.build_parser().parse_args(
        ["--weights", str(weights), "-D", str(davis), "--device", "cpu"]))
    assert 0.0 <= result["entropy"] <= result["uniform_entropy"] + 1e-6
    assert 0.0 < result["largest_weight"] <= 1.0
    assert 0.0 <= result["decoder_iou"] <= 1.0 and 0.0 <= result["foreground_iou"] <= 1.0
    assert "1 videos, frames 0-2, target: attention entropy" in capsys.readouterr().out
    with pytest.raises(UserError, match="DAVIS root"):
        readout_probe.main(["--weights", str(weights), "-D", str(tmp_path / "missing")])


# --- (d) bad data: one error line, exit status 2 -------------------------------------------------------------------

def test_bad_data_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="--davis"):
        hmmn_train.main(["--stages", "main", "--init", "scratch", "--output-dir", str(tmp_path / "o")])
    with pytest.raises(UserError, match="--coco"):
        hmmn_train.main(["--stages", "coco", "--init", "scratch", "--output-dir", str(tmp_path / "o")])
    with pytest.raises(UserError, match="multiple of 16"):
        hmmn_train.main(["--stages", "main", "--davis", str(tmp_path), "--crop", "80", "--init", "scratch"])
    with pytest.raises(UserError, match="short-side"):
        hmmn_train.main(["--stages", "main", "--davis", str(tmp_path), "--short-side", "480"])
    with pytest.raises(UserError, match="--deep-supervision is a switch of the BMVOS/EMVOS/TBD trainers"):
        hmmn_train.main(["--stages", "main", "--davis", str(tmp_path), "--deep-supervision"])
    with pytest.raises(UserError, match="--zero-init-residual sets the initial weights of a random start"):
        hmmn_train.main(["--stages", "main", "--davis", str(tmp_path), "--zero-init-residual"])  # --init imagenet
    short = write_davis(tmp_path / "short", n_frames=2)  # a 3-frame clip cannot be drawn from 2 frames
    with pytest.raises(UserError, match="no training video has 3 annotated frames"):
        hmmn_train.main(train_args(short, tmp_path / "o2", 1))
    empty = write_davis(tmp_path / "empty", empty=True)  # annotations without any object
    with pytest.raises(UserError, match="no usable clips"):
        hmmn_train.main(train_args(empty, tmp_path / "o3", 25))
    rgb = write_davis(tmp_path / "rgb")  # an RGB rendering of the masks: refused before training, as elsewhere
    first = rgb / "Annotations" / "480p" / "clip" / "00000.png"
    Image.open(first).convert("RGB").save(first)
    with pytest.raises(UserError, match="has image mode RGB"):
        hmmn_train.main(train_args(rgb, tmp_path / "o4", 1))
    assert not (tmp_path / "o4" / "main_last.pth").exists()


def test_missing_folder_exits_2_with_one_error_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hmmn.train", "--stages", "main", "--davis",
                          str(tmp_path / "missing"), "--init", "scratch", "--output-dir", str(tmp_path / "o")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0], run.stderr
