"""What a model trained on generated data has learned: the objects, or *which* object is the target.

    python tools/training_diagnosis.py tbd --weights outputs/train-sample/tbd/best.pth [--clips 64]

Draws clips as `make train-sample`'s video stage draws them (the paper's video recipe at the sizes of
`vos.train_sample.SCHEDULE_FLAGS`, one object of the first frame as the target, the others background), runs the
paper's training forward in eval() mode on them and compares its target masks with the *objectness* baseline: a
predictor that marks every object of the frame as the target. A model that knows where the objects are but not
which one it follows sits at or below that baseline, with nearly all its foreground on some object and much of it
on the wrong one. Prints one line per measure (BMVOS, EMVOS and TBD; HMMN trains on multi-object clips).
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, run_cli
from common.training.augment import ClipAugmenter
from common.training.trainer import fg_iou
from vos.train_sample import DEFAULT_OUT, SCHEDULE_FLAGS

PAPERS = ("bmvos", "emvos", "tbd")


def schedule_value(flag: str) -> int:
    return int(SCHEDULE_FLAGS[SCHEDULE_FLAGS.index(flag) + 1])


class _KeepLabels(ClipAugmenter):
    """The paper's augmenter, also keeping each frame's cropped label map (every object id, before the target is
    picked): the balanced crop's last attempt is the first frame's crop, each later frame crops once."""

    def __call__(self, frames, flips, rng) -> dict:
        self.labels: List[torch.Tensor] = []
        clip = super().__call__(frames, flips, rng)
        clip["labels"] = torch.stack(self.labels[-len(frames):])
        return clip

    def _crop_label(self, mask, crop) -> torch.Tensor:
        label = super()._crop_label(mask, crop)
        self.labels.append(label)
        return label


def paper_parts(paper: str):
    """(model class, training forward, video-stage clip recipe) of the paper."""
    from common.training.augment import EMVOS_VIDEO, TBD_DAVIS
    if paper == "tbd":
        from tbd.model import TBD as Model
        from tbd.train import tbd_forward_clip as forward_clip
    elif paper == "bmvos":
        from bmvos.model import BMVOS as Model
        from bmvos.train import bmvos_forward_clip as forward_clip
    else:
        from emvos.model import EMVOS as Model
        from emvos.train import emvos_forward_clip as forward_clip
    recipe = EMVOS_VIDEO if paper == "emvos" else TBD_DAVIS
    crop = schedule_value("--crop")
    return Model, forward_clip, recipe.scaled(output_size=(crop, crop), short_side=schedule_value("--short-side"),
                                              clip_length=schedule_value("--video-clip-length"),
                                              min_fg_pixels=schedule_value("--min-fg-pixels"))


@torch.no_grad()
def diagnose(model: torch.nn.Module, forward_clip, clips: Sequence[dict], batch_size: int = 4) -> dict:
    """The measures over `clips` (dicts with imgs, masks, labels), frames 1.. of each clip."""
    scores = torch.cat([forward_clip(model, torch.stack([c["imgs"] for c in clips[i:i + batch_size]]),
                                     torch.stack([c["masks"] for c in clips[i:i + batch_size]]))
                        for i in range(0, len(clips), batch_size)])
    height, width = scores.shape[-2:]
    target = torch.stack([c["masks"][1:, 0] for c in clips]).reshape(-1, height, width) == 1
    objects = torch.stack([c["labels"][1:, 0] for c in clips]).reshape(-1, height, width) > 0
    predicted = scores.reshape(-1, 2, height, width).argmax(1) == 1
    every_object = torch.stack([~objects, objects], 1).float()
    n_predicted = max(int(predicted.sum()), 1)
    return {
        "model target IoU": float(fg_iou(scores.reshape(-1, 2, height, width), target.long())),
        "objectness baseline IoU (every object marked)": float(fg_iou(every_object, target.long())),
        "predicted target pixels on some object": int((predicted & objects).sum()) / n_predicted,
        "predicted target pixels on another object": int((predicted & objects & ~target).sum()) / n_predicted,
        "target pixels found": int((predicted & target).sum()) / max(int(target.sum()), 1),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python tools/training_diagnosis.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("paper", choices=PAPERS)
    p.add_argument("--weights", type=Path, required=True, help="the trained checkpoint (e.g. best.pth)")
    p.add_argument("--davis", type=Path, default=DEFAULT_OUT / "data" / "DAVIS",
                   help="the generated training videos (default: make train-sample's)")
    p.add_argument("--clips", type=int, default=64, help="clips to draw")
    p.add_argument("--seed", type=int, default=1)
    add_device_argument(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.clips < 1:
        raise UserError(f"--clips {args.clips}: draw at least 1 clip")
    if not args.weights.is_file():
        raise UserError(f"--weights {args.weights}: no such file; train one with make train-sample PAPER={args.paper}")
    from common.hub.checkpoints import load_into
    from common.training.clips import davis_train_clips

    model_class, forward_clip, recipe = paper_parts(args.paper)
    device = pick_device(args.device)
    model = load_into(model_class(), str(args.weights)).to(device).eval()
    dataset = davis_train_clips(args.davis, recipe, args.clips, rng=random.Random(args.seed))
    dataset.augment = _KeepLabels(recipe)
    clips = [{k: v.to(device) for k, v in dataset[i].items()} for i in range(args.clips)]
    for name, value in diagnose(model, forward_clip, clips).items():
        print(f"{name:48s} {value:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
