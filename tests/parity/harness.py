"""Shared parity harness: golden fixtures recorded from the official code, checked case by case.

Every `$PARITY_ROOT/<paper>/*.pt` file is a test case. Each paper's test module builds its model,
calls `fill_` from `$PARITY_ROOT/fill.py`, and hands the case to the adapter registered for the
case's `meta['kind']`. A kind without an adapter fails: a new fixture dropped into the folder is
checked automatically, never silently skipped.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_ROOT = Path(os.environ.get("PARITY_ROOT", REPO_ROOT.parent / "shared" / "parity"))

# Where the adapters run the models: `VOS_TEST_DEVICE=cuda` (`make gpu-check`) moves models and their inputs
# there; fixtures stay on the CPU and every comparison is made on the CPU, with the same tolerances.
DEVICE = torch.device(os.environ.get("VOS_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda":
    # IEEE float32 as on the CPU: torch's default TF32 convolutions round inputs to 10 mantissa bits (~1e-3),
    # beyond the fixtures' tolerances; the fixtures check the float32 model, not a speed setting.
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"

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


def expected_outputs(case: Case) -> Dict[str, Any]:
    """The outputs to check: everything recorded except what `meta['omitted_outputs']` lists as absent."""
    omitted = set(case["meta"].get("omitted_outputs", ()))
    return {name: value for name, value in case["outputs"].items() if name not in omitted}


def to_imgs(frames: torch.Tensor) -> torch.Tensor:
    """uint8 `[..., H, W, 3]` -> contiguous float `[..., 3, H, W]` in [0, 1] (ToTensor + stack)."""
    return frames.movedim(-1, -3).contiguous().float() / 255


class VideoCall(NamedTuple):
    """Every input of an official `forward(imgs, given_masks, [dist,] val_frame_ids)` video fixture."""
    imgs: torch.Tensor                          # float [1, T, 3, H, W]
    given_masks: List[Optional[torch.Tensor]]   # T entries: int64 [1, 1, H, W] or None
    val_frame_ids: Optional[List[int]]
    extra: Dict[str, Any]                       # the entry's other inputs, by name (TBD: `dist`)


def _frame_id_list(value: Any) -> Optional[List[int]]:
    if isinstance(value, str):  # meta stores it as text: 'None' or '[10, 12, 13]'
        value = ast.literal_eval(value)
    if value is None:
        return None
    if torch.is_tensor(value):
        value = value.tolist()
    return [int(v) for v in value]


def video_call(case: Case, extra: Sequence[str] = ()) -> VideoCall:
    """The entry's arguments from `case['inputs']`; an input the entry does not take fails the case.

    `val_frame_ids` comes from the inputs, or else from `meta['val_frame_ids']` (the text 'None' in the
    public DAVIS-style cases, a list of absolute frame numbers for YouTube-VOS-style ones)."""
    inputs, meta = case["inputs"], case["meta"]
    known = {"frames", "given_masks", "val_frame_ids", *extra}
    unknown = sorted(set(inputs) - known)
    if unknown:
        pytest.fail(f"fixture {meta.get('case')!r} has inputs {unknown} that the adapter does not pass; "
                    f"it passes {sorted(known)}")
    frames = inputs["frames"]
    given = [inputs["given_masks"].get(t) for t in range(frames.shape[0])]
    return VideoCall(imgs=to_imgs(frames)[None].to(DEVICE),
                     given_masks=[None if m is None else m.long().to(DEVICE) for m in given],
                     val_frame_ids=_frame_id_list(inputs.get("val_frame_ids", meta.get("val_frame_ids"))),
                     extra={name: inputs[name].to(DEVICE) for name in extra})


def check_per_call(outputs: Mapping[str, Any], recorded: Mapping[str, Sequence[torch.Tensor]],
                   tolerances: Mapping[str, float]) -> None:
    """Per-call tensors (one entry per decoder call, in call order) against the fixture's lists.

    `recorded[name]` holds what our model produced for output `name`; names the fixture omits are not
    compared, but the number of calls is, whenever the fixture says it."""
    n_calls = {len(calls) for calls in recorded.values()}
    assert len(n_calls) == 1, f"hooks recorded different numbers of calls: {n_calls}"
    n = n_calls.pop()
    where = outputs.get("final_score_calls")
    if where is not None:
        assert n == len(where), f"{n} decoder calls, the fixture has {len(where)}"
    for name, atol in tolerances.items():
        if name not in outputs:
            continue
        assert len(outputs[name]) == n, f"{name}: {n} calls, the fixture has {len(outputs[name])}"
        for i, (actual, expected) in enumerate(zip(recorded[name], outputs[name])):
            label = f"{name}[{i}]" + ("" if where is None else f" (frame, object) {list(where[i])}")
            assert_close(label, actual, expected, atol=atol)


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
    diff = (actual.detach().cpu().double() - expected.cpu().double()).abs()
    bound = atol + rtol * expected.double().abs()
    worst = (diff - bound).max().item() if diff.numel() else 0.0
    assert worst <= 0, f"{name}: max |diff| {diff.max().item():.3g} exceeds atol={atol} rtol={rtol}"


def assert_masks_agree(name: str, actual: torch.Tensor, expected: torch.Tensor, max_fraction: float) -> None:
    """Label maps `[..., H, W]` equal except at most `max_fraction` of the pixels of each frame."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    per_frame = (actual.cpu().long() != expected.cpu().long()).flatten(-2).double().mean(-1)
    assert per_frame.max().item() <= max_fraction, (
        f"{name}: up to {per_frame.max().item():.4%} of a frame's pixels differ (allowed {max_fraction:.4%})")
