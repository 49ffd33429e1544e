"""BMVOS (WACV 2022): its official checkpoints and the authors' released results, registered in `common.hub`.

Importing the package registers them (`bmvos/__init__.py`); `OFFICIAL_WEIGHTS` is the checkpoint the tools
load by default (DAVIS). sha256 is None wherever no official hash exists and the file could not be downloaded
to compute one.
"""
from __future__ import annotations

from common.hub.checkpoints import CHECKPOINT_REGISTRY, WeightSpec
from common.hub.results import DAVIS_AND_YTVOS18, RESULTS_REGISTRY, ResultsSpec

OFFICIAL_WEIGHTS = "bmvos-davis"

CHECKPOINTS = CHECKPOINT_REGISTRY.register(
    WeightSpec(
        name="bmvos-davis", paper="bmvos", dataset="davis",
        description="BMVOS (WACV 2022) model for DAVIS 2016/2017 evaluation",
        filename="BMVOS_davis.pth", drive_id="16FmdVvTn9BKAr2X1QbJhcMOvQ4av_JGw",
        source="suhwan-cho/BMVOS README 'Pre-trained model (davis)'; run.py loads weights/BMVOS_davis.pth",
    ),
    WeightSpec(
        name="bmvos-ytvos", paper="bmvos", dataset="ytvos",
        description="BMVOS (WACV 2022) model for YouTube-VOS 2018 evaluation",
        # run.py only names the DAVIS file; this name follows it by analogy.
        filename="BMVOS_ytvos.pth", drive_id="1Gbv9SfNkJf08kd2ZWiRdEjWTP0em20f2",
        source="suhwan-cho/BMVOS README 'Pre-trained model (ytvos)'",
    ),
)

RELEASED_RESULTS = RESULTS_REGISTRY.register(
    ResultsSpec(
        name="bmvos", paper="bmvos", description="BMVOS (WACV 2022) pre-computed results, one archive",
        sets=DAVIS_AND_YTVOS18, drive_ids=("18Pf6n7uh0Ima5tcu-rmbGJ2GnyPEuixK", "1IkUGkIH86ERpAPQeJNckgLdwQ8yBCNgk"),
        source="suhwan-cho/BMVOS README 'Attachments: Pre-computed results' (5011df8e, 2025-06-02), then the "
               "earlier README's 'Download: [pre-computed results]' link",
    ),
)
