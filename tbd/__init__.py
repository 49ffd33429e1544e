"""TBD: Tackling Background Distraction in Video Object Segmentation (Cho et al., ECCV 2022).

The package fulfils the paper contract of `vos.contract`:

- `tbd.checkpoints`: the official checkpoints (`tbd-davis`, `tbd-ytvos`) and released results, registered in
  `common.hub` on import; `OFFICIAL_WEIGHTS`.
- `tbd.model`: `TBD` (official state_dict layout), `distance_matrix(H, W, device)` (cached per grid/device),
  `load_model(weights, device)`.
- `tbd.fast`: `FastTBD(model, options, *, encoder_batch=None, autocast_decoder=False)`, the batched fast mode.
- `tbd.inference`: `segment_video(model, video, *, resize=True)` with the official evaluator's 480p rule,
  `make_segmenter(weights, device, *, fast=None, resize=True)`, `FRAME_ENCODER`.
- `tbd.train`: `tbd_forward_clip` and the official COCO -> DAVIS / YouTube-VOS (custom split) schedule on the
  shared trainer in `common.training`.
- `tbd.reproduce`: `PUBLISHED` (the paper's J&F per set; `PUBLISHED_WITHOUT_COCO` beside it) and
  `python -m tbd.reproduce`; `tbd.demo`: `run_demo` for `make demo`.
- `python -m tbd.run --test | --train`: the official `run.py` command line.
"""

TITLE = "TBD"  # the name tables and progress lines print

from tbd import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
