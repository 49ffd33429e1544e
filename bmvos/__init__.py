"""BMVOS: Pixel-Level Bijective Matching for Video Object Segmentation (Cho et al., WACV 2022).

- `bmvos.model`: `BMVOS` (official state_dict layout; `forward` = video inference, `forward_train` =
  the training path the shared trainer drives) and `load_model(weights, device)`.
- `bmvos.fast`: `FastBMVOS(model, options)`, fast mode (`--fast`, `--precision`, `--compile`).
- `bmvos.inference`: the official evaluator's glue (480p resize with its small-object exception):
  `segment_video`, `make_segmenter`, `FRAME_ENCODER`.
- `bmvos.checkpoints`: the official checkpoints and released results (registered in `common.hub`).
- `python -m bmvos.main_runfile`: benchmarks (DAVIS16/17 val, DAVIS17 test-dev, YouTube-VOS 2018 val).
- `python -m bmvos.reproduce`: official weights vs the published numbers (`PUBLISHED`; `make reproduce-bmvos`).
- `python -m bmvos.train` (or `main_runfile --train`): TBD's training recipe through `common.training`.
- `bmvos.demo`: `run_demo` for `make demo`.
"""

TITLE = "BMVOS"  # the name tables and progress lines print

from bmvos import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
