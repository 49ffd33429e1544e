"""The shared training pipeline (common.training) on tiny synthetic data, with a toy model where possible."""
from __future__ import annotations

import csv
import importlib
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from common.data.synthetic import make_coco_sample, make_davis_sample
from common.runtime.errors import UserError
from common.training import (EMVOS_COCO, EMVOS_VIDEO, TBD_COCO, TBD_DAVIS, COCOClips, LossNotFinite, TrainConfig,
                             Trainer, davis_train_clips, fg_iou, maybe_swap_and_attach, swap_and_attach,
                             ytvos_train_clips)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    return {"coco": make_coco_sample(root / "COCO", n_images=2, height=48, width=64),
            "davis": make_davis_sample(root / "DAVIS", n_videos=1, n_frames=4, height=48, width=64, n_train=2)}


def check_clip(clip: dict, length: int, size: int, min_fg: int) -> None:
    imgs, masks = clip["imgs"], clip["masks"]
    assert imgs.shape == (length, 3, size, size) and imgs.dtype == torch.float32
    assert masks.shape == (length, 1, size, size) and masks.dtype == torch.int64
    assert 0 <= imgs.min() and imgs.max() <= 1
    assert set(masks.unique().tolist()) <= {0, 1}
    assert masks[0].sum() >= min_fg  # the balanced crop keeps the chosen object on the first frame


@pytest.mark.parametrize("recipe", [EMVOS_COCO, TBD_COCO], ids=["emvos", "tbd"])
def test_coco_clips(data, recipe):
    random.seed(0)
    clips = COCOClips(data["coco"], recipe.scaled(output_size=(32, 32), short_side=48, min_fg_pixels=8),
                      clips_per_epoch=3)
    assert len(clips) == 3
    for i in range(2):
        check_clip(clips[i], 5, 32, 8)


@pytest.mark.parametrize("recipe", [EMVOS_VIDEO, TBD_DAVIS], ids=["emvos", "tbd"])
def test_davis_clips(data, recipe):
    random.seed(1)
    clips = davis_train_clips(data["davis"], recipe.scaled(output_size=(32, 32), clip_length=6, min_fg_pixels=8,
                                                           short_side=48 if recipe.short_side else None), 2)
    check_clip(clips[0], 6, 32, 8)  # 6 > 4 frames: the last frame repeats, as upstream


def test_ytvos_clips(data, tmp_path, capsys):
    import shutil

    davis = Path(data["davis"])
    for kind in ("JPEGImages", "Annotations"):
        for video in ("synth-train-00", "synth-train-01", "synth-val-00"):
            shutil.copytree(davis / kind / "480p" / video, tmp_path / "train" / kind / video)
    recipe = EMVOS_VIDEO.scaled(output_size=(32, 32), clip_length=3, min_fg_pixels=8, short_side=48)
    clips = ytvos_train_clips(tmp_path, recipe, 2)  # no ImageSets/train.txt: every training video, with a notice
    assert "not found" in capsys.readouterr().out and len(clips.videos) == 3
    check_clip(clips[0], 3, 32, 8)
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "cho_train.txt").write_text("synth-train-00\n")
    assert [v[0] for v in ytvos_train_clips(tmp_path, recipe, 2, video_list="cho_train").videos] == ["synth-train-00"]
    with pytest.raises(UserError, match="cho_val.txt"):
        ytvos_train_clips(tmp_path, recipe, 2, video_list="cho_val")


def test_clips_are_reproducible(data):
    recipe = EMVOS_COCO.scaled(output_size=(32, 32), short_side=48, min_fg_pixels=8)
    random.seed(5)
    a = COCOClips(data["coco"], recipe)[0]
    random.seed(5)
    b = COCOClips(data["coco"], recipe)[0]
    assert torch.equal(a["imgs"], b["imgs"]) and torch.equal(a["masks"], b["masks"])


def test_missing_roots_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="COCO root"):
        COCOClips(tmp_path / "nope", EMVOS_COCO)
    with pytest.raises(UserError, match="DAVIS root"):
        davis_train_clips(tmp_path / "nope", EMVOS_VIDEO)
    (tmp_path / "DAVIS").mkdir()
    with pytest.raises(UserError, match="train.txt"):
        davis_train_clips(tmp_path / "DAVIS", EMVOS_VIDEO)
    with pytest.raises(UserError, match="YouTube-VOS"):
        ytvos_train_clips(tmp_path, EMVOS_VIDEO)


def test_swap_and_attach_pastes_previous_clip_object():
    imgs = torch.stack([torch.full((1, 3, 2, 2), float(b)) for b in range(3)])  # clip b has value b
    masks = torch.zeros(3, 1, 1, 2, 2, dtype=torch.long)
    masks[:, :, :, 0, 0] = 1
    out_imgs, out_masks = swap_and_attach(imgs, masks)
    assert out_imgs[1, 0, :, 0, 0].tolist() == [0.0] * 3  # clip 1 received clip 0's object
    assert out_imgs[0, 0, :, 0, 0].tolist() == [2.0] * 3  # clip 0 received the last clip's
    assert out_imgs[1, 0, :, 1, 1].tolist() == [1.0] * 3  # elsewhere unchanged
    assert out_masks.sum() == 0  # the pasted objects cover the targets


def test_swap_and_attach_probability():
    rng = random.Random(0)
    imgs, masks = torch.rand(2, 1, 3, 2, 2), torch.ones(2, 1, 1, 2, 2, dtype=torch.long)
    applied = sum(maybe_swap_and_attach(imgs, masks, 0.2, rng)[1].sum().item() == 0 for _ in range(2000))
    assert 300 < applied < 500
    assert all(maybe_swap_and_attach(imgs, masks, 0.0, rng)[1] is masks for _ in range(50))


def test_fg_iou():
    scores = torch.zeros(1, 2, 2, 2)
    scores[0, 1, 0, :] = 1  # predicts the top row
    gt = torch.tensor([[[1, 0], [0, 0]]])
    assert fg_iou(scores, gt).item() == pytest.approx(0.5)


# --- Trainer with a toy per-pixel model -----------------------------------------------------------------------------

class _Clips(torch.utils.data.Dataset):
    """Deterministic-by-RNG tiny clips whose masks are bright pixels (learnable by a 1x1 conv)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        imgs = torch.rand(3, 3, 8, 8)
        masks = (imgs.mean(1, keepdim=True) > 0.5).long()
        masks[0, 0, 0, 0], masks[0, 0, 0, 1] = 0, 1  # both values on frame 0, so no batch is skipped
        return {"imgs": imgs, "masks": masks}


def toy_forward(model, imgs, masks):
    b, l, c, h, w = imgs.shape
    return model(imgs[:, 1:].reshape(-1, c, h, w)).view(b, l - 1, 2, h, w)


def toy_config(**kw) -> TrainConfig:
    base = dict(save_name="toy", epochs=2, batch_size=2, save_step=1, val_step=1, num_workers=0, lr=1e-2)
    base.update(kw)
    return TrainConfig(**base)


def make_toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, 2, 1)


def test_trainer_resume_is_exact(tmp_path):
    cpu = torch.device("cpu")
    random.seed(0)
    torch.manual_seed(1)
    straight = make_toy()
    torch.manual_seed(1)
    Trainer(straight, toy_forward, _Clips(), toy_config(), tmp_path / "a", cpu, validate=lambda m: 0.5).train()

    random.seed(0)
    first = make_toy()
    torch.manual_seed(1)
    Trainer(first, toy_forward, _Clips(), toy_config(epochs=1), tmp_path / "b", cpu, validate=lambda m: 0.5).train()
    torch.manual_seed(123)  # the resume checkpoint must restore every RNG
    random.seed(123)
    resumed = make_toy()
    trainer = Trainer(resumed, toy_forward, _Clips(), toy_config(), tmp_path / "b", cpu, validate=lambda m: 0.5,
                      resume=True)
    assert trainer.epoch == 1
    trainer.train()
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == ["toy_0001.pth", "toy_0002.pth", "toy_best.pth", "toy_curves.png", "toy_last.pth", "toy_log.csv",
                     "toy_log.jsonl"]
    log = [json.loads(line) for line in (tmp_path / "b" / "toy_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    # the per-step CSV goes on across the resume: 2 batches per epoch, the validation score on each epoch's last
    with open(tmp_path / "b" / "toy_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["epoch"], r["jf"]) for r in rows] == [("1", "1", ""), ("2", "1", "0.5"),
                                                                ("3", "2", ""), ("4", "2", "0.5")]
    assert float(rows[0]["lr"]) == 1e-2 and 0 <= float(rows[3]["iou"]) <= 1
    state = torch.load(tmp_path / "b" / "toy_0002.pth", weights_only=True)
    assert set(state) == {"weight", "bias"}  # numbered checkpoints are plain state_dicts, as upstream


def test_trainer_refuses_to_overwrite_a_run(tmp_path):
    cpu = torch.device("cpu")
    Trainer(make_toy(), toy_forward, _Clips(), toy_config(epochs=1), tmp_path, cpu).train()
    with pytest.raises(UserError, match="--resume"):
        Trainer(make_toy(), toy_forward, _Clips(), toy_config(epochs=1), tmp_path, cpu)
    finished = Trainer(make_toy(), toy_forward, _Clips(), toy_config(epochs=1), tmp_path, cpu, resume=True)
    assert finished.finished and finished.train()["epoch"] == 1


def test_trainer_stops_on_nan(tmp_path):
    def nan_forward(model, imgs, masks):
        return toy_forward(model, imgs, masks) * float("nan")

    with pytest.raises(LossNotFinite, match="epoch 1"):
        Trainer(make_toy(), nan_forward, _Clips(), toy_config(), tmp_path, torch.device("cpu")).train()


def test_trainer_bn_mode(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)).eval()
    before = model[1].running_mean.clone()
    Trainer(model, toy_forward, _Clips(), toy_config(epochs=1), tmp_path / "eval", torch.device("cpu")).train()
    assert not model.training and torch.equal(model[1].running_mean, before)  # official: BN stays in eval
    Trainer(model, toy_forward, _Clips(), toy_config(epochs=1, bn_train=True), tmp_path / "train",
            torch.device("cpu")).train()
    assert not torch.equal(model[1].running_mean, before)


def test_schedule_overrides_from_the_command_line():
    import argparse

    from common.training.schedule import Overrides, add_schedule_arguments, parse_stages, stage_plan
    from common.training.tbd_recipe import TBD_SCHEDULE, TBD_SCHEDULE_HELP

    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser, **TBD_SCHEDULE_HELP)
    overrides = Overrides.from_args(parser.parse_args(["--epochs", "2", "--crop", "32", "--coco-clip-length", "3"]))
    coco, davis = stage_plan(TBD_SCHEDULE, "coco", overrides), stage_plan(TBD_SCHEDULE, "davis", overrides)
    assert (coco.epochs, coco.batch_size, coco.save_step) == (2, 16, 4000)  # unset flags keep the official value
    assert coco.recipe.output_size == (32, 32) and coco.recipe.clip_length == 3
    assert davis.recipe.clip_length == TBD_SCHEDULE["davis"].recipe.clip_length == 10  # a COCO-only override
    assert stage_plan(TBD_SCHEDULE, "ytvos", Overrides()) == TBD_SCHEDULE["ytvos"]
    with pytest.raises(TypeError, match="epoch"):
        add_schedule_arguments(argparse.ArgumentParser(), epoch="typo")

    assert parse_stages(" coco, davis ", TBD_SCHEDULE) == ["coco", "davis"]
    for bad in ("coco,kinetics", " , "):
        with pytest.raises(UserError, match="choose from coco, davis, ytvos"):
            parse_stages(bad, TBD_SCHEDULE)


class _WithEncoder(nn.Module):
    """A toy whose `encoder` runs under no_grad, as the papers freeze theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 3, 1)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.encoder(x)
        return self.head(x)


@pytest.mark.parametrize("train_encoder", [False, True])
def test_train_encoder_switch(tmp_path, train_encoder):
    model = _WithEncoder()
    encoder_before = model.encoder.weight.detach().clone()
    config = toy_config(epochs=1, train_encoder=train_encoder)
    Trainer(model, toy_forward, _Clips(), config, tmp_path, torch.device("cpu")).train()
    assert torch.equal(model.encoder.weight, encoder_before) is not train_encoder  # official: frozen
    # outside the training step the model is as the paper wrote it: its encoder gets no gradient
    model.zero_grad(set_to_none=True)
    model(torch.rand(1, 3, 4, 4)).sum().backward()
    assert model.encoder.weight.grad is None and model.head.weight.grad is not None


def test_time_limit_ends_the_stage(tmp_path, capsys):
    config = toy_config(epochs=1000, save_step=1000, val_step=1000, time_limit_s=1e-9)
    trainer = Trainer(make_toy(), toy_forward, _Clips(), config, tmp_path, torch.device("cpu"), validate=lambda m: 0.5)
    assert trainer.train()["epoch"] == 1
    assert "stopped at its time limit" in capsys.readouterr().out
    assert (tmp_path / "toy_0001.pth").is_file() and (tmp_path / "toy_best.pth").is_file()  # validated, saved
    again = Trainer(make_toy(), toy_forward, _Clips(), config, tmp_path, torch.device("cpu"), resume=True)
    assert again.finished  # a resumed run goes on to the next stage


def test_time_limit_counts_the_seconds_before_a_resume(tmp_path):
    """A stage stopped by Ctrl-C and resumed keeps its time budget: the seconds it trained before count."""
    config = toy_config(epochs=1000, save_step=1000, val_step=1000, resume_every=1)
    Trainer(make_toy(), toy_forward, _Clips(), replace(config, epochs=2), tmp_path, torch.device("cpu")).train()
    state = torch.load(tmp_path / "toy_last.pth", weights_only=True)
    assert state["epoch"] == 2 and state["seconds"] > 0  # the resume checkpoint carries the seconds trained
    state["seconds"] = 3600.0  # as if the interrupted run had trained for an hour
    torch.save(state, tmp_path / "toy_last.pth")
    again = Trainer(make_toy(), toy_forward, _Clips(), replace(config, time_limit_s=1800.0), tmp_path,
                    torch.device("cpu"), resume=True)
    result = again.train()
    assert result["epoch"] == 3 and again.time_limited  # over its budget already: one more epoch, then it stops
    assert result["seconds"] > 3600.0


def test_a_larger_time_limit_continues_a_last_stage_that_stopped_at_its_limit(tmp_path, capsys):
    """`--resume --time-limit MORE` trains on a command's last stage; an earlier stage, or the same limit, does not."""
    config = toy_config(epochs=1000, save_step=1000, val_step=1000, time_limit_s=1e-9)
    assert Trainer(make_toy(), toy_forward, _Clips(), config, tmp_path, torch.device("cpu")).train()["epoch"] == 1
    seconds = torch.load(tmp_path / "toy_last.pth", weights_only=True)["seconds"]
    for same_limit, last_stage in ((True, True), (False, False)):
        again = replace(config, time_limit_s=config.time_limit_s if same_limit else 3600.0,
                        extend_time_limit=last_stage)
        capsys.readouterr()
        resumed = Trainer(make_toy(), toy_forward, _Clips(), again, tmp_path, torch.device("cpu"), resume=True)
        assert resumed.finished and resumed.train()["epoch"] == 1
        assert ("a larger --time-limit trains it on" in capsys.readouterr().out) is last_stage
    assert torch.load(tmp_path / "toy_last.pth", weights_only=True)["epoch"] == 1  # neither trained on
    more = replace(config, time_limit_s=2 * seconds, extend_time_limit=True)
    trainer = Trainer(make_toy(), toy_forward, _Clips(), more, tmp_path, torch.device("cpu"), resume=True)
    assert not trainer.finished
    result = trainer.train()
    assert result["epoch"] >= 2 and result["seconds"] >= more.time_limit_s and trainer.time_limited
    assert "trains on up to the new one" in capsys.readouterr().out
    assert Trainer(make_toy(), toy_forward, _Clips(), more, tmp_path, torch.device("cpu"), resume=True).finished


TRAINING_ENTRIES = {"bmvos": "bmvos.main_runfile", "emvos": "emvos.run", "tbd": "tbd.run", "hmmn": "hmmn.train"}


def run_training_entry(paper: str, argv: list, monkeypatch) -> list:
    """The paper's training command line with its trainer replaced by one that trains nothing: the `TrainConfig` of
    every stage it would have trained, in order."""
    configs = []

    class RecordingTrainer:
        def __init__(self, *args, **kwargs):
            configs.append(next(a for a in args if isinstance(a, TrainConfig)))
            self.resume_path = Path("unused.pth")

        def train(self):
            return {}

    for module, name in (("common.training.tbd_recipe", "Trainer"), ("emvos.train", "Trainer"),
                         ("hmmn.training", "HMMNTrainer")):
        monkeypatch.setattr(importlib.import_module(module), name, RecordingTrainer)
    importlib.import_module(TRAINING_ENTRIES[paper]).main(argv if paper == "hmmn" else ["--train"] + argv)
    return configs


@pytest.mark.parametrize("paper", list(TRAINING_ENTRIES))
def test_only_a_commands_last_stage_takes_more_time_on_resume(paper, tmp_path, monkeypatch):
    """vos.train_sample resumes `--stages coco,<video>` with the video stage's time limit: the finished COCO stage
    must not train on under it."""
    coco = make_coco_sample(tmp_path / "COCO", n_images=2, height=96, width=96)
    davis = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=96, width=96)
    video = "main" if paper == "hmmn" else "davis"
    argv = ["--coco", str(coco), "--davis", str(davis), "--stages", f"coco,{video}", "--output-dir",
            str(tmp_path / "out"), "--init", "scratch", "--device", "cpu", "--workers", "0", "--time-limit", "1"]
    configs = run_training_entry(paper, argv, monkeypatch)
    assert [(c.save_name, c.extend_time_limit) for c in configs] == [("coco", False), (f"coco_{video}", True)]


@pytest.mark.parametrize("paper", list(TRAINING_ENTRIES))
def test_resuming_a_run_started_from_imagenet_downloads_nothing(paper, tmp_path, monkeypatch):
    """`--resume` of a run started with the default `--init imagenet`: the checkpoint holds every weight, so the
    entry point must not fetch the ImageNet weights again (offline it would stop there)."""
    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(importlib.import_module("torchvision.models._api"), "load_state_dict_from_url", offline)
    davis = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=96, width=96)
    video = "main" if paper == "hmmn" else "davis"
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{video}_last.pth").write_bytes(b"")  # what check_resume and start_init look for
    argv = ["--davis", str(davis), "--stages", video, "--output-dir", str(out), "--device", "cpu", "--workers", "0",
            "--resume"]
    assert len(run_training_entry(paper, argv, monkeypatch)) == 1  # built, and handed to its one stage's trainer


def test_a_resumed_run_starts_from_scratch_instead_of_imagenet(tmp_path):
    from common.training.schedule import start_init
    stages = ["coco", "davis"]
    assert start_init("imagenet", tmp_path, stages, resume=True) == "imagenet"  # nothing to resume yet
    (tmp_path / "coco_last.pth").write_bytes(b"")
    assert start_init("imagenet", tmp_path, stages, resume=True) == "scratch"  # the checkpoint holds every weight
    assert start_init("imagenet", tmp_path, stages, resume=False) == "imagenet"
    assert start_init("hmmn", tmp_path, stages, resume=True) == "hmmn"  # only the ImageNet start is skipped
