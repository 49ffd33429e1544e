"""Where BMVOS finds its data by default (the official README's "define the paths in local_config").

Nobody needs to edit this file: each value can be overridden by an environment variable, and each of
those by a command-line flag of `python -m bmvos.main_runfile`.

    setting            environment variable    flag
    DAVIS_ROOT         BMVOS_DAVIS_ROOT        --davis
    YTVOS_ROOT         BMVOS_YTVOS_ROOT        --ytvos
    OUTPUT_DIR         BMVOS_OUTPUT            --output
    WEIGHTS            BMVOS_WEIGHTS           --weights   (a checkpoint file; empty = official weights)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

DAVIS_ROOT = "data/DAVIS"        # DAVIS 2017 folder: JPEGImages/480p, Annotations/480p, ImageSets/{2016,2017}
YTVOS_ROOT = "data/YTVOS18"      # YouTube-VOS 2018: valid/{JPEGImages,Annotations}, valid_all_frames/JPEGImages
OUTPUT_DIR = "outputs/bmvos"     # results go to OUTPUT_DIR/<set>/<video>/<frame>.png (<set>: davis17-val, ...)
WEIGHTS = ""                     # empty: the official checkpoint of --model, fetched into the weights cache

_ENV = {"DAVIS_ROOT": "BMVOS_DAVIS_ROOT", "YTVOS_ROOT": "BMVOS_YTVOS_ROOT",
        "OUTPUT_DIR": "BMVOS_OUTPUT", "WEIGHTS": "BMVOS_WEIGHTS"}


def setting(name: str) -> str:
    """The environment variable's value if set and non-empty, else the default above."""
    return os.environ.get(_ENV[name]) or globals()[name]


def path_setting(name: str) -> Optional[Path]:
    value = setting(name)
    return Path(value).expanduser() if value else None
