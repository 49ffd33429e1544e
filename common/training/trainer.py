"""The one training loop of the BMVOS/EMVOS/TBD family (their official `trainer.py` files are near-identical).

Upstream an "epoch" is one pass over `clips_per_epoch` random clips (128), i.e. a handful of batches; the
official schedules count these epochs (e.g. COCO: 8000 epochs of 8 batches of 16 clips), save a numbered
checkpoint every `save_step` epochs, validate every `val_step` epochs and keep the best validation score's
weights as `<save_name>_best.pth`. Per batch: optional swap-and-attach (probability 0.2), skip the batch if
any clip's first-frame mask does not hold exactly background + one object, the paper's forward, mean
cross-entropy over frames 1..L-1, Adam step, and the running loss / foreground-IoU statistics.

BatchNorm: the official run scripts build the model with `.eval()` and never call `.train()`, so the
encoder's BatchNorm layers use their running statistics during training. That is the default here;
`TrainConfig.bn_train=True` trains in train() mode instead (validation always runs in eval()).

Encoder: the papers run their DenseNet encoder under `torch.no_grad()` (frozen, ImageNet weights).
`TrainConfig.train_encoder=True` (off by default, for training from a random start) gives every submodule
named `encoder` gradients during the training forward only (see `encoder_gradients`).
`TrainConfig.deep_supervision=True` (off by default, likewise) adds the loss of the decoder's coarse masks to the
optimised loss (`common.training.deep_supervision`), `TrainConfig.matching_supervision=True` that of the matcher's
similarities (`common.training.matching_supervision`, EMVOS); the log's loss stays the final logits' cross-entropy.
`TrainConfig.teacher_forcing=True` (likewise) calls the paper's forward as `forward_clip(model, imgs, masks,
teacher_forcing=True)`: the clip's state follows its ground-truth masks instead of the prediction.
`TrainConfig.cosine_lr=True` (likewise; upstream's learning rate is constant) sets each epoch's learning rate on a
half cosine from `lr` to 0 over the stage: over its epochs, or over its time limit when that ends it sooner.

Logs (rank 0, next to the checkpoints): `<save_name>_log.jsonl` (one line per epoch), `<save_name>_log.csv`
(one row per optimizer step: step, epoch, loss, iou, jf (the validation score, on the step that ended a
validated epoch), lr) and `<save_name>_curves.png` (loss and validation score against steps), redrawn
after every validation and at the end of the stage.

Distributed (`torchrun --nproc_per_node=N -m <paper>.train ...`): the Trainer joins the torchrun process group
itself (`common.runtime.distributed.init_distributed`; a plain run is untouched) and trains with
DistributedDataParallel. `batch_size` stays the paper's *global* batch: each of the N ranks loads
batch_size / N clips through a DistributedSampler, so an epoch has as many optimizer steps as on one GPU and
DDP's gradient average equals the single-process mean loss. Ranks draw different clips (every RNG is
re-seeded with the rank after the caller's common seed, so the model still starts identical); the skip rule
and the NaN check are decided over all ranks (a global batch is skipped when any clip in it is unusable, as
upstream skips a batch). Rank 0 alone validates, writes checkpoints and the log; resume checkpoints hold
every rank's RNG state. DDP only synchronises `forward`, so the paper's `forward_clip` is wrapped as the
forward of a small module; `find_unused_parameters=True` because the encoder runs under no_grad (it is not
trained) and gets no gradient: DDP then leaves those gradients None on every rank, so Adam skips them exactly
as in a single-process run. BatchNorm is not synchronised (official default: eval(), running statistics);
with `bn_train` DDP broadcasts rank 0's buffers each step. Swap-and-attach draws once per rank's share.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from common.data.output_folder import write_file_atomic, write_text_atomic
from common.runtime.distributed import DistContext, init_distributed
from common.runtime.errors import UserError
from common.runtime.training_arguments import resume_checkpoint
from common.training.curves import CSV_FIELDS, write_curves_png
from common.training.deep_supervision import DeepSupervision
from common.training.matching_supervision import MatchingSupervision
from common.training.swap_attach import SWAP_ATTACH_PROBABILITY, maybe_swap_and_attach

# forward_clip(model, imgs [B,L,3,H,W] float, masks [B,L,1,H,W] int64) -> scores [B,L-1,2,H,W] raw logits
# (with TrainConfig.teacher_forcing it is called with teacher_forcing=True as well)
ForwardClip = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
# validate(model) -> score to maximise (J&F on DAVIS 2017 val upstream); called under no_grad in eval()
Validate = Callable[[nn.Module], float]


class LossNotFinite(UserError):
    """Training produced a NaN/inf loss; the message says where and which checkpoint to resume from."""


@dataclass
class TrainConfig:
    """One training stage. Defaults are the shared upstream values; schedules come from each paper."""
    save_name: str                  # checkpoint prefix, e.g. 'coco' or 'coco_davis' as upstream
    epochs: int                     # upstream `trainer.train(max_epochs)`
    batch_size: int
    save_step: int                  # numbered checkpoint every this many epochs
    val_step: int                   # validation every this many epochs (when a validator is given)
    lr: float = 1e-4                # Adam, no weight decay, no schedule
    num_workers: int = 4
    shuffle: bool = True            # EMVOS's DataLoader shuffles, TBD's does not (the clips are random anyway)
    swap_attach_probability: float = SWAP_ATTACH_PROBABILITY  # 0 disables swap-and-attach
    bn_train: bool = False          # False = official behaviour (module stays in eval())
    resume_every: int = 0           # write the resume checkpoint every this many epochs (0: at val/save steps)
    train_encoder: bool = False     # False = official (encoder frozen); True gives submodules `encoder` gradients
    deep_supervision: bool = False  # False = official; True adds the decoder's coarse masks to the loss
    matching_supervision: bool = False  # False = official; True adds the matcher's similarities to the loss
    teacher_forcing: bool = False   # False = official; True: forward_clip(..., teacher_forcing=True), see _ClipStep
    cosine_lr: bool = False         # False = official (constant lr); True: half cosine to 0 over the stage
    time_limit_s: float = 0.0       # > 0: end the stage at the first epoch end past this many seconds of training
                                    # (seconds of earlier runs of the stage, before a resume, count too)
    extend_time_limit: bool = False  # resumed after it stopped at its time limit, the stage trains on when this
                                     # limit is larger (a command's last stage: `--resume --time-limit MORE`)

# a stage that has seen this many batches without one usable clip batch stops with an error (see `Trainer`)
NO_USABLE_CLIPS_AFTER = 20


def fg_iou(scores: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean foreground IoU of argmax predictions, the official training statistic.

    `scores` `[N, 2, H, W]`, `gt` `[N, H, W]`; per sample (inter + 1e-7) / (union + 1e-7) of class 1.
    """
    n, c, h, w = scores.shape
    pred = scores.argmax(dim=1).view(n, 1, h, w)
    classes = torch.arange(c, device=gt.device).view(1, c, 1, 1)
    pred_bin = pred == classes
    gt_bin = gt.view(n, 1, h, w) == classes
    inter = (pred_bin & gt_bin).float().sum(dim=(-2, -1))
    union = (pred_bin | gt_bin).float().sum(dim=(-2, -1))
    return ((inter + 1e-7) / (union + 1e-7))[:, 1:].mean()


def clip_loss(scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `scores` `[B, L-1, 2, H, W]` against frames 1..L-1 of `masks` `[B, L, 1, H, W]`."""
    h, w = scores.shape[-2:]
    return nn.CrossEntropyLoss()(scores.reshape(-1, 2, h, w), masks[:, 1:].reshape(-1, h, w))


def has_one_object_each(masks: torch.Tensor) -> bool:
    """Upstream skips a batch unless every clip's first-frame mask has exactly two distinct values."""
    return all(len(masks[b, 0].unique()) == 2 for b in range(masks.shape[0]))


def cosine_lr(base: float, progress: float) -> float:
    """The learning rate `progress` (0..1) of the way along a half cosine from `base` to 0."""
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Mean:
    def __init__(self) -> None:
        self.sum, self.count = 0.0, 0

    def update(self, value: float, n: int) -> None:
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else float("nan")


# --- checkpoints --------------------------------------------------------------------------------------------------------

def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda handle: torch.save(obj, handle))


def _rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _reseed_for_rank(rank: int) -> None:
    """Give each DDP rank its own random stream (clips, swap-and-attach, DataLoader worker seeds).

    Derived from torch's current seed, which the caller set alike on every rank before building the model
    (DDP also broadcasts rank 0's weights), so a seeded distributed run repeats."""
    seed = (torch.initial_seed() + 1_000_003 * rank) % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encoder_modules(model: nn.Module) -> List[nn.Module]:
    """The submodules named `encoder` (`vos.encoder` in BMVOS, EMVOS and TBD)."""
    return [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "encoder"]


@contextlib.contextmanager
def encoder_gradients(encoders: List[nn.Module]) -> Iterator[None]:
    """While inside, each encoder's forward runs with autograd on, even inside the model's own
    `torch.no_grad()` (the papers freeze their encoder that way). Patches the instances' `forward` only for
    the duration, so the model's code, state_dict and inference are untouched."""
    def with_grad(forward):
        def run(*args, **kwargs):
            with torch.enable_grad():
                return forward(*args, **kwargs)
        return run

    for encoder in encoders:
        encoder.forward = with_grad(encoder.forward)
    try:
        yield
    finally:
        for encoder in encoders:
            del encoder.forward  # back to the class's forward


class _ClipStep(nn.Module):
    """`forward(imgs, masks) = forward_clip(model, imgs, masks)`: the paper's training forward as a module's
    `forward`, which is what DistributedDataParallel wraps and synchronises (papers train through
    `forward_train` or extra arguments). Holds `model` itself, so its parameters are DDP's parameters.
    With `train_encoder`, the encoders get gradients during this forward (see `encoder_gradients`); with
    `teacher_forcing`, `forward_clip` is called with `teacher_forcing=True`."""

    def __init__(self, model: nn.Module, forward_clip: ForwardClip, train_encoder: bool = False,
                 teacher_forcing: bool = False) -> None:
        super().__init__()
        self.model = model
        self.forward_clip = functools.partial(forward_clip, teacher_forcing=True) if teacher_forcing else forward_clip
        self.encoders = encoder_modules(model) if train_encoder else []
        if train_encoder and not self.encoders:
            raise UserError("--train-encoder: this model has no submodule named 'encoder' to train")

    def forward(self, imgs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        with encoder_gradients(self.encoders):
            return self.forward_clip(self.model, imgs, masks)


class Trainer:
    """Runs one stage: `Trainer(model, forward_clip, train_set, config, out_dir, device, validate).train()`.

    Files in `out_dir`: `<save_name>_<epoch:04d>.pth` and `<save_name>_best.pth` (plain model state_dicts,
    like the official ones), `<save_name>_last.pth` (resume checkpoint: model, optimizer, epoch, step, best
    score, RNG states), `<save_name>_log.jsonl` (one line of loss/IoU/score per epoch), `<save_name>_log.csv`
    (one row per optimizer step) and `<save_name>_curves.png` (loss and validation score against steps).
    With `resume=True` an existing `<save_name>_last.pth` is restored first; a finished stage only reloads
    its final weights, so a two-stage run can be restarted as a whole.

    A stage whose first `NO_USABLE_CLIPS_AFTER` batches all break the skip rule (no clip batch where every
    first frame holds an object) stops with a `UserError`: its dataset has no usable clips.
    """

    def __init__(self, model: nn.Module, forward_clip: ForwardClip, train_set: Dataset, config: TrainConfig,
                 out_dir: Path, device: torch.device, validate: Optional[Validate] = None,
                 resume: bool = False, dist: Optional[DistContext] = None) -> None:
        # dist=None: join torchrun's process group if launched by torchrun, else a plain single process
        self.dist = dist if dist is not None else init_distributed(device)
        device = self.dist.device  # cuda:<LOCAL_RANK> under torchrun; the requested device otherwise
        self.model = model.to(device)
        self.forward_clip = forward_clip
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = device
        self.validate = validate
        self.sampler: Optional[DistributedSampler] = None
        batch_size = config.batch_size
        if self.dist.enabled:
            batch_size = self._rank_batch_size()
            self.sampler = DistributedSampler(train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                              shuffle=config.shuffle)
            _reseed_for_rank(self.dist.rank)
        self.loader = DataLoader(train_set, batch_size=batch_size, shuffle=config.shuffle and self.sampler is None,
                                 sampler=self.sampler, num_workers=config.num_workers,
                                 pin_memory=device.type == "cuda")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.step_module: nn.Module = _ClipStep(self.model, forward_clip, config.train_encoder, config.teacher_forcing)
        # extra losses of the scratch-training switches: each listens to the training forward, then adds its loss
        self.supervisions = ([DeepSupervision(self.model)] if config.deep_supervision else []) + \
            ([MatchingSupervision(self.model)] if config.matching_supervision else [])
        if self.dist.enabled:
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)  # the frozen encoder gets no gradient (see the module docstring)
        self.epoch = 0              # last completed epoch
        self.step = 0               # optimizer steps so far (the CSV log's x axis)
        self.batches_seen = 0       # batches drawn in this process, usable or not
        self._epoch_rows: List[Dict[str, Any]] = []  # this epoch's CSV rows, written when it ends
        self.best_score = 0.0       # upstream starts at 0: a checkpoint is "best" only with a positive score
        self.time_limited = False   # the stage ended at its time limit (counts as finished)
        self.seconds = 0.0          # seconds spent in this stage's training loop, over all runs resumed so far
        self.score = 0.0
        if resume:
            self.load_resume_checkpoint()
        elif self.resume_path.exists():
            raise UserError(f"{self.resume_path} already exists; pass --resume to continue that run, or choose "
                            f"another output folder to start afresh")

    def _rank_batch_size(self) -> int:
        batch, ranks = self.config.batch_size, self.dist.world_size
        if batch % ranks:
            raise UserError(f"[{self.config.save_name}] the batch of {batch} clips cannot be split evenly over "
                            f"{ranks} processes; the batch size is the global one (the paper's), so start a "
                            f"number of processes that divides it (torchrun --nproc_per_node / --nnodes)")
        return batch // ranks

    def _everywhere(self, flag: bool) -> bool:
        """True when `flag` holds on every rank (one tiny all-reduce; the flag itself in a single process)."""
        if not self.dist.enabled:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return bool(value.item())

    # -- paths
    def path(self, tag: str) -> Path:
        return self.out_dir / f"{self.config.save_name}_{tag}.pth"

    @property
    def resume_path(self) -> Path:
        return resume_checkpoint(self.out_dir, self.config.save_name)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs or (self.time_limited and not self._time_limit_extended)

    @property
    def _time_limit_extended(self) -> bool:
        """A stage that stopped at its time limit has been given more time (`TrainConfig.extend_time_limit`)."""
        cfg = self.config
        return cfg.extend_time_limit and cfg.time_limit_s > self.seconds

    # -- main loop
    def train(self) -> Dict[str, float]:
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.finished:
            hint = "; a larger --time-limit trains it on" if self.time_limited and cfg.extend_time_limit else ""
            print(f"[{cfg.save_name}] already finished ({self.epoch} epochs); using its final weights{hint}")
            return {"epoch": self.epoch, "best_score": self.best_score, "seconds": self.seconds}
        main = self.dist.is_main  # rank 0 validates, saves and logs; the others only train
        if self.time_limited and main:
            print(f"[{cfg.save_name}] stopped at its time limit after {self.seconds / 60:.3g} min; trains on up to "
                  f"the new one ({cfg.time_limit_s / 60:.3g} min)")
        bar = tqdm(range(self.epoch + 1, cfg.epochs + 1), desc=f"train {cfg.save_name}", unit="epoch",
                   initial=self.epoch, total=cfg.epochs, dynamic_ncols=True, disable=not main)
        started, first_epoch, seconds_before = time.monotonic(), self.epoch + 1, self.seconds
        for epoch in bar:
            loss, iou = self.train_epoch(epoch)
            self.seconds = seconds_before + time.monotonic() - started
            # past the time limit on any rank: this epoch is the stage's last (validated and checkpointed)
            out_of_time = not self._everywhere(not (cfg.time_limit_s > 0 and self.seconds >= cfg.time_limit_s))
            validated = self.validate is not None and (epoch % cfg.val_step == 0 or out_of_time)
            if validated and main:
                self.score = self.run_validation()
                tqdm.write(f"[{cfg.save_name} ep{epoch:04d}] loss {loss:.5f}  iou {iou:.5f}  J&F {self.score:.5f}")
            if main:
                self._log_steps(validated)
            bar.set_postfix(loss=f"{loss:.4f}", iou=f"{iou:.4f}", step=self.step)
            if cfg.time_limit_s > 0:  # the bar's total (so its ETA) is the epochs the time limit leaves room for
                per_epoch = (time.monotonic() - started) / (epoch - first_epoch + 1)
                left = math.ceil(max(0.0, cfg.time_limit_s - self.seconds) / per_epoch)
                bar.total = min(cfg.epochs, epoch + left)
                bar.refresh()
            self.epoch = epoch
            self.time_limited = out_of_time
            if main and (epoch % cfg.save_step == 0 or out_of_time):
                atomic_save(self.model.state_dict(), self.path(f"{epoch:04d}"))
            if main and self.score > self.best_score:
                tqdm.write(f"[{cfg.save_name}] new best checkpoint after epoch {epoch} (score {self.score:.5f})")
                self.best_score = self.score
                atomic_save(self.model.state_dict(), self.path("best"))
            if main:
                self._log({"epoch": epoch, "loss": loss, "iou": iou, "score": self.score if validated else None})
                if validated or epoch == cfg.epochs or out_of_time:
                    self._draw_curves()
            every = cfg.resume_every
            if ((every and epoch % every == 0) or validated or epoch % cfg.save_step == 0 or epoch == cfg.epochs
                    or out_of_time):
                self.save_resume_checkpoint()  # collective under DDP (gathers every rank's RNG state)
            self.dist.barrier()  # no rank runs ahead of rank 0's validation and checkpoints
            if out_of_time:
                break
        bar.close()
        if main and self.time_limited:
            print(f"[{cfg.save_name}] stopped at its time limit ({cfg.time_limit_s / 60:.3g} min) after epoch "
                  f"{self.epoch} of {cfg.epochs}, best score {self.best_score:.5f}; final weights "
                  f"{self.path(f'{self.epoch:04d}')}")
        elif main:
            print(f"[{cfg.save_name}] finished training ({cfg.epochs} epochs, best score {self.best_score:.5f})")
        return {"epoch": self.epoch, "best_score": self.best_score, "seconds": self.seconds}

    def train_epoch(self, epoch: int) -> tuple:
        cfg = self.config
        self.model.train(cfg.bn_train)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        if cfg.cosine_lr:
            self.set_lr(cosine_lr(cfg.lr, self.progress(epoch)))
        loss_meter, iou_meter = _Mean(), _Mean()
        self._epoch_rows = []
        for step, batch in enumerate(self._batches()):
            self.batches_seen += 1
            imgs = batch["imgs"].to(self.device, non_blocking=True)
            masks = batch["masks"].to(self.device, non_blocking=True)
            if cfg.swap_attach_probability > 0:
                imgs, masks = maybe_swap_and_attach(imgs, masks, cfg.swap_attach_probability)
            if not self._everywhere(has_one_object_each(masks)):  # DDP: every rank skips the same steps
                self._check_usable_clips()
                continue
            with contextlib.ExitStack() as listening:
                for supervision in self.supervisions:
                    listening.enter_context(supervision.collecting())
                scores = self.step_module(imgs, masks)
            loss = clip_loss(scores, masks)  # what the log shows: the final logits' loss, with or without the extras
            self.optimize(sum((s.loss(masks) for s in self.supervisions), loss), epoch, step)
            b = imgs.shape[0]
            h, w = scores.shape[-2:]
            batch_iou = fg_iou(scores.detach().reshape(-1, 2, h, w), masks[:, 1:].reshape(-1, h, w)).item()
            loss_meter.update(loss.item(), b)
            iou_meter.update(batch_iou, b)
            self._epoch_rows.append({"step": self.step, "epoch": epoch, "loss": loss.item(), "iou": batch_iou,
                                     "jf": None, "lr": self.optimizer.param_groups[0]["lr"]})
        if self.dist.enabled:  # the log and the bar show the global batch's statistics
            totals = torch.tensor([loss_meter.sum, loss_meter.count, iou_meter.sum, iou_meter.count],
                                  dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(totals)
            loss_meter.sum, loss_meter.count, iou_meter.sum, iou_meter.count = totals.tolist()
        return loss_meter.avg, iou_meter.avg

    def progress(self, epoch: int) -> float:
        """The share of the stage done when `epoch` starts, 0..1: of its epochs, or of its time limit when that is
        further along (rank 0's clock under DDP, so every rank agrees)."""
        done = (epoch - 1) / self.config.epochs
        if self.config.time_limit_s > 0:
            seconds = self.seconds
            if self.dist.enabled:
                clock = torch.tensor([seconds], dtype=torch.float64, device=self.device)
                torch.distributed.broadcast(clock, src=0)
                seconds = clock.item()
            done = max(done, seconds / self.config.time_limit_s)
        return min(1.0, done)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def optimize(self, loss: torch.Tensor, epoch: int, batch: int) -> None:
        """One optimizer step on `loss`; a loss that is not finite on any rank stops every rank with one line."""
        if not self._everywhere(bool(torch.isfinite(loss))):  # DDP: all ranks stop together
            where = f" (rank {self.dist.rank}; some rank's loss was not finite)" if self.dist.enabled else ""
            raise LossNotFinite(
                f"[{self.config.save_name}] loss became {loss.item()}{where} at epoch {epoch}, batch {batch}; "
                f"training stopped. "
                f"The last good state is {self.resume_path if self.resume_path.exists() else 'not saved yet'}; "
                f"resume from it (--resume) with a lower learning rate or check the training data")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1

    def _batches(self) -> Iterator[dict]:
        """The loader's batches; a `UserError` raised in a DataLoader worker (a bad mask, an unreadable frame)
        comes back as torch re-raises it, with the worker's traceback in its message: keep its own line."""
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except UserError as err:
                text = str(err)
                if not text.startswith("Caught "):
                    raise
                last = text.strip().splitlines()[-1]
                raise type(err)(last.split("Error: ", 1)[-1]) from None
            yield batch

    visible_object_rule = "keep at least --min-fg-pixels pixels inside the --crop"  # how a crop keeps an object

    def _check_usable_clips(self) -> None:
        """No optimizer step after many batches: every clip lacks an object in its first frame (empty
        annotations, objects too small for the balanced crop, a void-only mask): stop with one clear line."""
        if self.step == 0 and self.batches_seen >= NO_USABLE_CLIPS_AFTER:
            raise UserError(
                f"[{self.config.save_name}] the training set has no usable clips: none of the first "
                f"{self.batches_seen} batches had an object in every clip's first frame (the official skip "
                f"rule). Check that its annotations hold object ids (not all background) and that objects "
                f"{self.visible_object_rule}")

    def run_validation(self) -> float:
        assert self.validate is not None
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            score = float(self.validate(self.model))
        self.model.train(was_training)
        return score

    # -- checkpoints
    def save_resume_checkpoint(self) -> None:
        """Rank 0 writes it; under DDP every rank must call this (it gathers their RNG states)."""
        rng = _rng_state()
        rank_rngs = None
        if self.dist.enabled:
            rank_rngs = [None] * self.dist.world_size
            torch.distributed.all_gather_object(rank_rngs, rng)
        if not self.dist.is_main:
            return
        extra = {} if rank_rngs is None else {"rank_rng": rank_rngs}
        atomic_save({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "time_limited": self.time_limited,
            "seconds": self.seconds,
            "best_score": self.best_score,
            "score": self.score,
            "rng": rng,
            "config": asdict(self.config),
            **extra,
        }, self.resume_path)

    def load_resume_checkpoint(self) -> bool:
        """Restore `<save_name>_last.pth` if present; returns whether something was restored."""
        path = self.resume_path
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, EOFError) as err:
            raise UserError(f"cannot resume from {path}: {err}; delete it to start this stage afresh") from err
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", 0))
        self.time_limited = bool(state.get("time_limited", False))
        self.seconds = float(state.get("seconds", 0.0))
        self._truncate_csv()  # rows of epochs after the checkpoint are trained again
        self.best_score = float(state["best_score"])
        self.score = float(state["score"])
        rank_rngs = state.get("rank_rng")
        if self.dist.enabled and rank_rngs is not None and len(rank_rngs) == self.dist.world_size:
            _set_rng_state(rank_rngs[self.dist.rank])  # each rank continues its own random stream
        else:
            _set_rng_state(state["rng"])
            if self.dist.enabled:  # another world size than the saved run: fresh per-rank streams
                _reseed_for_rank(self.dist.rank)
        if self.dist.is_main:
            print(f"[{self.config.save_name}] resumed from {path} after epoch {self.epoch}")
        return True

    # -- logs
    @property
    def csv_path(self) -> Path:
        return self.out_dir / f"{self.config.save_name}_log.csv"

    @property
    def curves_path(self) -> Path:
        return self.out_dir / f"{self.config.save_name}_curves.png"

    def _log_steps(self, validated: bool) -> None:
        """Append this epoch's step rows to the CSV (the validation score on its last row)."""
        rows = self._epoch_rows
        if validated and rows:
            rows[-1]["jf"] = self.score
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        self._epoch_rows = []

    def _truncate_csv(self) -> None:
        """Keep the CSV rows up to the restored step (a crash may have logged steps the checkpoint lacks)."""
        if not self.dist.is_main or not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        kept = io.StringIO()
        writer = csv.DictWriter(kept, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.csv_path, kept.getvalue())  # a Ctrl-C here never loses the whole log

    def _draw_curves(self) -> None:
        if self.csv_path.exists():
            write_curves_png(self.csv_path, self.curves_path, title=f"{self.config.save_name}")

    def _log(self, record: Dict[str, Any]) -> None:
        with open(self.out_dir / f"{self.config.save_name}_log.jsonl", "a") as f:
            f.write(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                for k, v in record.items()}) + "\n")
