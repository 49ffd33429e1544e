"""TBD (ECCV 2022): its official checkpoints and the authors' released results, registered in `common.hub`.

Importing the package registers them (`tbd/__init__.py`); `OFFICIAL_WEIGHTS` is the checkpoint the tools
load by default (DAVIS). sha256 is None wherever no official hash exists and the file could not be downloaded
to compute one.
"""
from __future__ import annotations

from common.hub.checkpoints import CHECKPOINT_REGISTRY, WeightSpec
from common.hub.results import DAVIS_AND_YTVOS18, RESULTS_REGISTRY, ResultsSpec

OFFICIAL_WEIGHTS = "tbd-davis"

CHECKPOINTS = CHECKPOINT_REGISTRY.register(
    WeightSpec(
        name="tbd-davis", paper="tbd", dataset="davis",
        description="TBD (ECCV 2022) model for DAVIS 2016/2017 evaluation",
        filename="TBD_davis.pth", drive_id="1bL5sew3b76XhXe7vlC57gYZSPjkbmaPb",
        source="suhwan-cho/TBD README 'Pre-trained model (davis)'; run.py loads weights/TBD_davis.pth",
    ),
    WeightSpec(
        name="tbd-ytvos", paper="tbd", dataset="ytvos",
        description="TBD (ECCV 2022) model for YouTube-VOS 2018 evaluation",
        # run.py only names the DAVIS file; this name follows it by analogy.
        filename="TBD_ytvos.pth", drive_id="1mDHAj5Utih9aNmmexsXzoUGZQzzeb-Tf",
        source="suhwan-cho/TBD README 'Pre-trained model (ytvos)'",
    ),
)

RELEASED_RESULTS = RESULTS_REGISTRY.register(
    ResultsSpec(
        name="tbd", paper="tbd", description="TBD (ECCV 2022) pre-computed results, one archive",
        sets=DAVIS_AND_YTVOS18, drive_ids=("1d-KIWYBxbU-VHmLqvCbyLMz_sRExt8Ir",),
        source="suhwan-cho/TBD README 'Attachments: Pre-computed results' (d65c7baf, 2025-06-02)",
    ),
)
