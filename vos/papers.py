"""The paper packages, looked up by name so that `common` never imports them at module level.

`make demo` and `make bench` walk this list; each package exposes its hooks in `<paper>/demo.py`.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

PAPERS = ("bmvos", "emvos", "tbd", "hmmn", "gis")


def demo_hooks(paper: str) -> Optional[ModuleType]:
    """`<paper>.demo`, or None while that package has no demo yet."""
    try:
        return importlib.import_module(f"{paper}.demo")
    except ModuleNotFoundError as err:
        if err.name in (f"{paper}.demo", paper):
            return None
        raise
