"""EMVOS: Pixel-Level Equalized Matching for Video Object Segmentation (Cho et al., 2022).

`emvos.model.EMVOS` is the network (state_dict identical to the official `coco_davis_best.pth`),
`emvos.run` the `--test` / `--train` command line, `emvos.reproduce` the `make reproduce-emvos` entry,
`emvos.demo` the `make demo` / `make bench` hooks.
"""

TITLE = "EMVOS"  # the name tables and progress lines print

from emvos import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
