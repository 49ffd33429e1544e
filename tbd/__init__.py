"""TBD: Tackling Background Distraction in Video Object Segmentation (Cho et al., ECCV 2022).

- `tbd.model`: `TBD` (official state_dict layout), `distance_matrix(H, W, device)` (cached per grid/device).
- `tbd.inference`: `segment_video(model, video, device, resize=True)` with the official evaluator's 480p rule.
- `tbd.train`: `tbd_forward_clip` and the official COCO -> DAVIS / YouTube-VOS (custom split) schedule on the
  shared trainer in `common.training`.
- `python -m tbd.run --test | --train`, `python -m tbd.reproduce`, `tbd.demo` hooks for `make demo` / `make bench`.
"""

TITLE = "TBD"  # the name tables and progress lines print

from tbd import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
