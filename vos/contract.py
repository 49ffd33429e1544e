"""The contract every paper package fulfils, so that the tools in `vos` can use all five the same way.

A paper package `P` (bmvos, emvos, tbd, hmmn; gis where an interactive method allows) provides:

    P/__init__.py     TITLE                 the paper's name in tables and progress lines ("BMVOS")
                      imports P.checkpoints, which registers its entries in `common.hub`
    P/checkpoints.py  CHECKPOINTS           its official checkpoints (`WeightSpec`s), registered
                      RELEASED_RESULTS      the authors' released results (`ResultsSpec`s), registered
                      OFFICIAL_WEIGHTS      the checkpoint loaded by default (the DAVIS one)
    P/model.py        load_model(weights, device) -> the network in eval mode on `device`; `weights` is a
                      registry name, a checkpoint file or "seeded" (a seeded initialisation), None = the
                      official weights
    P/fast.py         Fast<TITLE>(model, options: FastOptions = None) (FastGIS for GIS-RAmap): an `nn.Module`
                      around the loaded network, called like it (GIS: by its session, in place of the
                      network's calls), with the same results up to float rounding
                      (`common.inference.fast.FastOptions`: --fast / --precision / --compile)
    P/reproduce.py    PUBLISHED: {result-folder set name ("davis17-val", ...): the paper's number}, its own
                      table: J&F-Mean in % for the semi-supervised papers (YouTube-VOS: the overall score),
                      {(metric, guide): (AUC, J&F@60s)} for the interactive one; further columns (training
                      logs, variants) go into tables of their own
    P/demo.py         run_demo(davis_root, ytvos_root, out_dir, device, trained=None)
                          -> {"J&F-Mean": ..., ..., "weights": "official" | "seeded" | "trained here on
                          generated data"}; `trained`, a checkpoint trained here (`make train-sample`), is
                          used instead of the cached official or seeded weights

and, for the semi-supervised papers (a video from its first-frame mask):

    P/inference.py    segment_video(model, video, *, resize=True) -> {frame index: uint8 [H, W] labels}
                      `model` is the network or its fast wrapper; `resize=True` applies the paper's official
                      evaluator size rule (HMMN's is the stored size, so there it changes nothing)
                      load_segmenter(weights, device, fast: FastOptions = None) -> `load_model`'s network,
                          wrapped in Fast<TITLE> when `fast` is given (what the benchmark runners load)
                      make_segmenter(weights, device, *, fast: FastOptions = None, resize=True)
                          -> segment(video): `load_segmenter`'s model bound to `segment_video` and its settings
                      FRAME_ENCODER: the module class that encodes each frame (drives progress bars)

The interactive paper instead provides `P.demo.bench_round(davis_root, device, fast: FastOptions = None)`,
the seconds of one interaction round.

A paper may add keyword-only options with defaults (HMMN's `mem_every`); the tools never pass them.
`missing(name, package)` lists what a package lacks; `tests/test_contract.py` runs it on all five.
"""
from __future__ import annotations

import inspect
from types import ModuleType
from typing import Callable, List, Sequence

# (module, attribute, the leading parameters a callable must take, in order)
COMMON = (
    ("", "TITLE", None),
    ("checkpoints", "CHECKPOINTS", None),
    ("checkpoints", "RELEASED_RESULTS", None),
    ("checkpoints", "OFFICIAL_WEIGHTS", None),
    ("model", "load_model", ("weights", "device")),
    ("reproduce", "PUBLISHED", None),
    ("demo", "run_demo", ("davis_root", "ytvos_root", "out_dir", "device", "trained")),
)
SEMI_SUPERVISED = (
    ("inference", "segment_video", ("model", "video", "resize")),
    ("inference", "load_segmenter", ("weights", "device", "fast")),
    ("inference", "make_segmenter", ("weights", "device", "fast", "resize")),
    ("inference", "FRAME_ENCODER", None),
)
INTERACTIVE = (
    ("demo", "bench_round", ("davis_root", "device", "fast")),
)
SET_NAMES = ("davis16-val", "davis17-val", "davis17-test-dev", "ytvos18-valid", "ytvos19-valid")


def _parameters(func: Callable) -> List[str]:
    return [p.name for p in inspect.signature(func).parameters.values()]


def missing(name: str, package: ModuleType, *, interactive: bool = False) -> List[str]:
    """What `package` lacks of the contract (an empty list when it fulfils it)."""
    problems: List[str] = []
    for module_name, attribute, params in COMMON + (INTERACTIVE if interactive else SEMI_SUPERVISED):
        module = getattr(package, module_name, None) if module_name else package
        if module is None:
            problems.append(f"{name}.{module_name} is missing (or `vos.papers` does not import it)")
            continue
        where = f"{name}.{module_name}.{attribute}" if module_name else f"{name}.{attribute}"
        if not hasattr(module, attribute):
            problems.append(f"{where} is missing")
            continue
        if params is not None:
            got = _parameters(getattr(module, attribute))
            if got[:len(params)] != list(params):
                problems.append(f"{where} takes ({', '.join(got)}), the contract says ({', '.join(params)}, ...)")
    problems += _fast_class(name, package)
    published = getattr(getattr(package, "reproduce", None), "PUBLISHED", {})
    problems += [f"{name}.reproduce.PUBLISHED key {key!r} is not a result-folder set name ({', '.join(SET_NAMES)})"
                 for key in published if key not in SET_NAMES]
    return problems


def _fast_class(name: str, package: ModuleType) -> List[str]:
    import torch

    fast = getattr(package, "fast", None)
    if fast is None:
        return [f"{name}.fast is missing (or `vos.papers` does not import it)"]
    class_name = f"Fast{getattr(package, 'TITLE', name).split('-')[0]}"
    cls = getattr(fast, class_name, None)
    if cls is None:
        return [f"{name}.fast.{class_name} is missing"]
    problems = []
    if not issubclass(cls, torch.nn.Module):
        problems.append(f"{name}.fast.{class_name} is not an nn.Module")
    params: Sequence[str] = _parameters(cls.__init__)[1:]
    if list(params[:2]) != ["model", "options"]:
        problems.append(f"{name}.fast.{class_name} takes ({', '.join(params)}), the contract says (model, options)")
    return problems
