"""EMVOS: Pixel-Level Equalized Matching for Video Object Segmentation (Cho et al., 2022).

The package fulfils the paper contract of `vos.contract`:

    emvos.checkpoints   the official checkpoints and released results (registered in `common.hub` on import)
    emvos.model         `EMVOS`, the network (state_dict identical to the official `coco_davis_best.pth`),
                        and `load_model(weights, device)`
    emvos.fast          `FastEMVOS(model, FastOptions)`, the batched fast mode (`--fast`)
    emvos.inference     `segment_video`, `make_segmenter`, `FRAME_ENCODER`: one video the official evaluator's way
    emvos.run           the `--test` / `--train` command line (`emvos.train`: the official training schedule)
    emvos.reproduce     `make reproduce-emvos` (`PUBLISHED` is empty: no published table transcribed yet)
    emvos.demo          `run_demo`, the `make demo` part
"""

TITLE = "EMVOS"  # the name tables and progress lines print

from emvos import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
