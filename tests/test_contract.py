"""Every paper package fulfils the contract of `vos.contract`, and the tools reach the papers only through it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from vos import contract
from vos.papers import INTERACTIVE, PAPERS, SEMI_SUPERVISED

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(PAPERS))
def test_paper_package_meets_the_contract(name: str):
    assert contract.missing(name, PAPERS[name], interactive=name in INTERACTIVE) == []


def test_every_paper_is_either_semi_supervised_or_interactive():
    assert sorted(SEMI_SUPERVISED + INTERACTIVE) == sorted(PAPERS)


def test_contract_check_reports_what_is_missing():
    class Empty:
        TITLE = "Nothing"

    problems = contract.missing("nothing", Empty)
    assert "nothing.checkpoints is missing (or `vos.papers` does not import it)" in problems
    assert "nothing.fast is missing (or `vos.papers` does not import it)" in problems


def test_common_knows_no_paper():
    """`common` is the ground floor: it imports no paper package and not `vos`, looks no module up by name, and
    learns nothing about a caller from its signature."""
    offenders = []
    pattern = re.compile(r"^\s*(from|import)\s+(bmvos|emvos|tbd|hmmn|gis|vos)\b|import_module|__import__|"
                         r"inspect\.signature\((?!torch\.)", re.M)
    for path in sorted((ROOT / "common").rglob("*.py")):
        for match in pattern.finditer(path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: {match.group(0).strip()}")
    assert offenders == []


@pytest.mark.parametrize("name", list(PAPERS))
def test_no_paper_imports_another_or_the_tools(name: str):
    others = "|".join(p for p in list(PAPERS) + ["vos"] if p != name)
    pattern = re.compile(rf"^\s*(from|import)\s+({others})\b", re.M)
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for path in sorted((ROOT / name).rglob("*.py"))
                 for m in pattern.finditer(path.read_text())]
    assert offenders == []
