"""The five paper packages, imported plainly with the modules of their contract (`vos.contract`), so that
`PAPERS["tbd"].inference.make_segmenter` is an ordinary attribute. Importing a package also registers its
checkpoints and released results in `common.hub`.

The names are plain constants and `PAPERS` is built on first use (PEP 562 `__getattr__`): a command line takes
its `--method` choices from here, and `--help` or a mistyped flag must answer before the models (and torch)
load. Code that runs the models imports `PAPERS` where it runs them."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict

PAPER_NAMES = ("bmvos", "emvos", "tbd", "hmmn", "gis")  # table order: the registries list the papers in it too
SEMI_SUPERVISED = ("bmvos", "emvos", "tbd", "hmmn")  # segment a video from its first-frame mask
INTERACTIVE = ("gis",)                                # segment from a person's scribbles, round after round
CONTRACT_MODULES = {name: ("demo", "fast", "inference", "model", "reproduce") for name in SEMI_SUPERVISED}
CONTRACT_MODULES["gis"] = ("demo", "fast", "model", "reproduce")


def register_all() -> None:
    """Import the paper packages alone (light: their checkpoints and released results, no models), in table order."""
    for name in PAPER_NAMES:
        importlib.import_module(name)


def _load_papers() -> Dict[str, ModuleType]:
    register_all()
    for name in PAPER_NAMES:
        for module in CONTRACT_MODULES[name]:
            importlib.import_module(f"{name}.{module}")
    return {name: importlib.import_module(name) for name in PAPER_NAMES}


def __getattr__(attribute: str) -> Dict[str, ModuleType]:
    if attribute == "PAPERS":
        papers = globals()["PAPERS"] = _load_papers()
        return papers
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
