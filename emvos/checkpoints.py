"""EMVOS (arXiv 2022): its official checkpoints and the authors' released results, registered in `common.hub`.

Importing the package registers them (`emvos/__init__.py`); `OFFICIAL_WEIGHTS` is the checkpoint the tools
load by default (DAVIS). sha256 is None wherever no official hash exists and the file could not be downloaded
to compute one.
"""
from __future__ import annotations

from common.hub.checkpoints import CHECKPOINT_REGISTRY, WeightSpec
from common.hub.results import DAVIS_AND_YTVOS18, RESULTS_REGISTRY, ResultsSpec

OFFICIAL_WEIGHTS = "emvos-coco_davis"
EMVOS_COMMIT = "7e1e200338e9e74afa9f9d3cffb592fcc570d00b"  # suhwan-cho/EMVOS main, 2023-01-10
EMVOS_RAW = f"https://raw.githubusercontent.com/suhwan-cho/EMVOS/{EMVOS_COMMIT}/trained_model/"

CHECKPOINTS = CHECKPOINT_REGISTRY.register(
    WeightSpec(
        name="emvos-coco_davis", paper="emvos", dataset="davis",
        description="EMVOS model pre-trained on COCO, then trained on DAVIS 2017 train (best on DAVIS 2017 val)",
        filename="coco_davis_best.pth", url=EMVOS_RAW + "coco_davis_best.pth",
        git_blob_sha1="fd1081e60b4c7ab791edd1267a321c9621f86391",
        source=f"committed in suhwan-cho/EMVOS@{EMVOS_COMMIT[:8]} as trained_model/coco_davis_best.pth "
               "(a plain git blob, not an LFS pointer); run.py loads it",
    ),
    WeightSpec(
        name="emvos-coco_ytvos", paper="emvos", dataset="ytvos",
        description="EMVOS model pre-trained on COCO, then trained on YouTube-VOS 2018 train",
        filename="coco_ytvos_best.pth", url=EMVOS_RAW + "coco_ytvos_best.pth",
        git_blob_sha1="1778292b21ea66d8cfb18ceaf39f70f3fc8dc179",
        source=f"committed in suhwan-cho/EMVOS@{EMVOS_COMMIT[:8]} as trained_model/coco_ytvos_best.pth",
    ),
)

RELEASED_RESULTS = RESULTS_REGISTRY.register(
    ResultsSpec(
        name="emvos", paper="emvos", description="EMVOS pre-computed results, one archive",
        sets=DAVIS_AND_YTVOS18, drive_ids=("1GWn7csEX4C8PJWcnC1ykS8IYobloQaSh",),
        source="suhwan-cho/EMVOS README step 4 '(Optional) Download pre-computed results' (7e1e2003, 2023-01-10)",
    ),
)
