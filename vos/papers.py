"""The five paper packages, imported plainly with the modules of their contract (`vos.contract`), so that
`PAPERS["tbd"].inference.make_segmenter` is an ordinary attribute. Importing a package also registers its
checkpoints and released results in `common.hub`."""
from __future__ import annotations

from types import ModuleType
from typing import Dict

# In table order, so that the registries list the papers in it too.
import bmvos.demo, bmvos.fast, bmvos.inference, bmvos.model, bmvos.reproduce  # noqa: E401  isort: skip
import emvos.demo, emvos.fast, emvos.inference, emvos.model, emvos.reproduce  # noqa: E401  isort: skip
import tbd.demo, tbd.fast, tbd.inference, tbd.model, tbd.reproduce  # noqa: E401  isort: skip
import hmmn.demo, hmmn.fast, hmmn.inference, hmmn.model, hmmn.reproduce  # noqa: E401  isort: skip
import gis.demo, gis.fast, gis.model, gis.reproduce  # noqa: E401  isort: skip

PAPERS: Dict[str, ModuleType] = {"bmvos": bmvos, "emvos": emvos, "tbd": tbd, "hmmn": hmmn, "gis": gis}
SEMI_SUPERVISED = ("bmvos", "emvos", "tbd", "hmmn")  # segment a video from its first-frame mask
INTERACTIVE = ("gis",)                                # segment from a person's scribbles, round after round
