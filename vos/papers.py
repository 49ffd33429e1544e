"""The five paper packages, imported plainly: the tools below iterate over this table and use each package only
through the contract in `vos.contract`. Importing a package also registers its checkpoints and released results
in `common.hub`."""
from __future__ import annotations

from types import ModuleType
from typing import Dict

# In table order, so that registries list the papers in it too.
import bmvos  # isort: skip
import emvos  # isort: skip
import tbd  # isort: skip
import hmmn  # isort: skip
import gis  # isort: skip

PAPERS: Dict[str, ModuleType] = {"bmvos": bmvos, "emvos": emvos, "tbd": tbd, "hmmn": hmmn, "gis": gis}
SEMI_SUPERVISED = ("bmvos", "emvos", "tbd", "hmmn")  # segment a video from its first-frame mask
INTERACTIVE = ("gis",)                                # segment from a person's scribbles, round after round
