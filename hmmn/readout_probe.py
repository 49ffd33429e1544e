"""Where HMMN's /16 read-out looks: its attention on the first frames of DAVIS-layout videos.

    python -m hmmn.readout_probe --weights PATH -D DAVIS_ROOT [-s val] [--device cpu]

For every video of the split, frames 0-2 form a clip: frame 1 is read from the memory of frame 0, frame 2 from
frames 0 and 1, each memorised with its ground-truth masks (the training forward with `--teacher-forcing`,
`hmmn.training.clip_logits`; the network in eval(), as at test time, and its first two objects, as in
training). Printed over the videos, for the target (object 1):

- entropy: the mean entropy of a query cell's attention over the memory cells, in nats (a uniform attention
  has the logarithm of the number of memory cells, printed next to it; 0 is one memory cell per query cell);
- largest weight: the mean of each query cell's largest attention weight;
- read-out IoU: at /16, "most of the query cell's attention lies on memory cells of the target" against "most
  of the query cell is the target" (the quantity `--matching-supervision` trains);
- decoder IoU: the target's predicted pixels against its ground truth;
- foreground IoU: the pixels predicted as either object of the clip (the target and the second object) against
  the pixels of either, whichever object they are given to.

A trained model whose entropy is near 0 and whose read-out IoU is near 0 copies one background cell of the
memory into every query cell: its decoder segments without the matching (hmmn/README.md, "Training"). A
foreground IoU far above the decoder IoU means the objects are found but mistaken for one another.
"""
from __future__ import annotations

import argparse
import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, run_cli

CLIP_LENGTH = 3


def probe_clip(model, imgs: torch.Tensor, masks: torch.Tensor) -> Dict[str, float]:
    """Sums over one clip (`imgs` `[1, L, 3, H, W]` in [0, 1], `masks` `[1, L, 1, H, W]` labels) of the target's
    attention entropy, largest weight and query cells, and the read-out, decoder (target) and foreground (either
    object) intersections and unions."""
    from hmmn.training import OBJECTS_PER_CLIP, cell_coverage, clip_logits, memory_coverage, target_iou_counts
    log_attentions = []
    with torch.no_grad():
        logits = clip_logits(model, imgs, masks, teacher_forcing=True, log_attentions=log_attentions)
    cells, _ = cell_coverage(masks)
    sums = dict.fromkeys(("entropy", "uniform_entropy", "largest", "queries", "readout_i", "readout_u"), 0.0)
    for t, log_attention in enumerate(log_attentions, start=1):
        target_attention = log_attention[0].exp()  # [memory cells, query cells]; the target is object 0
        sums["entropy"] += float(-(target_attention * log_attention[0]).nan_to_num().sum(dim=0).sum())
        sums["largest"] += float(target_attention.max(dim=0).values.sum())
        memory_cells, queries = target_attention.shape
        sums["queries"] += queries
        sums["uniform_entropy"] += queries * math.log(memory_cells)
        on_target = memory_coverage(cells, t)[:1] @ target_attention > 0.5
        truth = cells[0, t, :1] > 0.5
        sums["readout_i"] += float((on_target & truth).sum())
        sums["readout_u"] += float((on_target | truth).sum())
    sums["decoder_i"], sums["decoder_u"] = target_iou_counts(logits, masks)
    any_object = logits.argmax(dim=2) > 0  # whichever of the clip's objects a pixel is given to
    labels = masks[:, 1:, 0]
    truth = (labels >= 1) & (labels <= OBJECTS_PER_CLIP)
    sums["foreground_i"] = float((any_object & truth).sum())
    sums["foreground_u"] = float((any_object | truth).sum())
    return sums


def summarize(sums: Dict[str, float]) -> Dict[str, float]:
    """Means and IoUs of the summed counts (an empty union counts as IoU 1, as in the evaluator)."""
    def iou(i: float, u: float) -> float:
        return i / u if u else 1.0

    return {"entropy": sums["entropy"] / sums["queries"],
            "uniform_entropy": sums["uniform_entropy"] / sums["queries"],
            "largest_weight": sums["largest"] / sums["queries"],
            "readout_iou": iou(sums["readout_i"], sums["readout_u"]),
            "decoder_iou": iou(sums["decoder_i"], sums["decoder_u"]),
            "foreground_iou": iou(sums["foreground_i"], sums["foreground_u"])}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hmmn.readout_probe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--weights", required=True, help="an HMMN checkpoint path or registry name ('hmmn')")
    p.add_argument("-D", "--davis", required=True, help="DAVIS-layout root (JPEGImages/480p, Annotations/480p)")
    p.add_argument("-s", "--split", default="val", help="ImageSets/2017/<split>.txt (default val)")
    add_device_argument(p)
    return p


def run(args: argparse.Namespace) -> Dict[str, float]:
    from common.data.datasets import DAVIS
    from common.hub.checkpoints import load_into
    from hmmn.model import HMMN
    videos = DAVIS(args.davis, 2017, args.split).videos()  # checks the layout before the model is built
    device = pick_device(args.device)
    model = load_into(HMMN(), args.weights).to(device).eval()
    totals: Dict[str, float] = {}
    used = 0
    for video in videos:
        if video.num_frames < CLIP_LENGTH:
            continue
        frames = np.stack([video.load_frame(i) for i in range(CLIP_LENGTH)])
        labels = video.load_gt()[:CLIP_LENGTH]
        height, width = labels.shape[1:]
        if height % 16 or width % 16:
            raise UserError(f"{video.name}: frames of {width}x{height}; the probe needs sides that are multiples "
                            f"of 16 (HMMN's training forward does not pad)")
        imgs = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None].to(device)
        masks = torch.from_numpy(np.where(labels == 255, 0, labels).astype(np.int64))[None, :, None].to(device)
        if not bool((masks[:, 0] == 1).any()):
            continue  # no target in frame 0: nothing to read
        for key, value in probe_clip(model, imgs, masks).items():
            totals[key] = totals.get(key, 0.0) + value
        used += 1
    if not used:
        raise UserError(f"no video of {args.davis} ({args.split}) has {CLIP_LENGTH} frames and object 1 in frame 0")
    result = summarize(totals)
    print(f"{used} videos, frames 0-{CLIP_LENGTH - 1}, target: attention entropy {result['entropy']:.2f} nats "
          f"(uniform {result['uniform_entropy']:.2f}), largest weight {result['largest_weight']:.2f}, "
          f"read-out IoU {result['readout_iou']:.3f}, decoder IoU {result['decoder_iou']:.3f} (either object: "
          f"{result['foreground_iou']:.3f})")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
