"""Shared parity harness: golden fixtures recorded from the official code, checked case by case.

Every `$PARITY_ROOT/<paper>/*.pt` file is a test case. Each paper's test module builds its model,
calls `fill_` from `$PARITY_ROOT/fill.py`, and hands the case to the adapter registered for the
case's `meta['kind']`. A kind without an adapter fails: a new fixture dropped into the folder is
checked automatically, never silently skipped.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_ROOT = Path(os.environ.get("PARITY_ROOT", REPO_ROOT.parent / "shared" / "parity"))

Case = Dict[str, Any]
Adapter = Callable[[Case], None]


def parity_dir(paper: str) -> Path:
    path = PARITY_ROOT / paper
    if not path.is_dir():
        raise FileNotFoundError(f"parity fixtures for {paper!r} not found at {path}; set $PARITY_ROOT")
    return path


def case_files(paper: str) -> List[Path]:
    """Every fixture of a paper, sorted; used to parametrize the paper's test."""
    files = sorted(parity_dir(paper).glob("*.pt"))
    if not files:
        raise FileNotFoundError(f"no *.pt fixtures in {parity_dir(paper)}")
    return files


def cases(paper: str):
    """`pytest.mark.parametrize` over a paper's fixture files, with the file stem as test id."""
    files = case_files(paper)
    return pytest.mark.parametrize("case_path", files, ids=[f.stem for f in files])


def load_case(path: Path) -> Case:
    return torch.load(path, map_location="cpu", weights_only=True)


def case_kind(case: Case) -> str:
    meta = case["meta"]
    return str(meta.get("kind", meta.get("case")))


def dispatch(case: Case, adapters: Mapping[str, Adapter]) -> None:
    kind = case_kind(case)
    if kind not in adapters:
        pytest.fail(f"fixture kind {kind!r} (case {case['meta'].get('case')!r}) has no adapter; "
                    f"known kinds: {sorted(adapters)}")
    adapters[kind](case)


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fill_(model: torch.nn.Module, prefix: str = "") -> torch.nn.Module:
    """The fixtures' deterministic weights (`$PARITY_ROOT/fill.py`)."""
    return _load_module(PARITY_ROOT / "fill.py", "parity_fill").fill_(model, prefix)


def manifest(paper: str) -> Dict[str, list]:
    return json.loads((parity_dir(paper) / "manifest.json").read_text())


def assert_matches_manifest(model: torch.nn.Module, paper: str) -> None:
    """Same state_dict keys, shapes and dtypes as the official model, nothing extra, nothing missing."""
    expected = manifest(paper)
    ours = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    assert not missing and not extra, f"state_dict differs: missing {missing[:5]}..., extra {extra[:5]}..."
    wrong = [(k, ours[k], expected[k]) for k in expected if ours[k] != expected[k]]
    assert not wrong, f"shape/dtype mismatch (key, ours, official): {wrong[:5]}"


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs()
    bound = atol + rtol * expected.double().abs()
    worst = (diff - bound).max().item() if diff.numel() else 0.0
    assert worst <= 0, f"{name}: max |diff| {diff.max().item():.3g} exceeds atol={atol} rtol={rtol}"


def assert_masks_agree(name: str, actual: torch.Tensor, expected: torch.Tensor, max_fraction: float) -> None:
    """Label maps `[..., H, W]` equal except at most `max_fraction` of the pixels of each frame."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    per_frame = (actual.long() != expected.long()).flatten(-2).double().mean(-1)
    assert per_frame.max().item() <= max_fraction, (
        f"{name}: up to {per_frame.max().item():.4%} of a frame's pixels differ (allowed {max_fraction:.4%})")
