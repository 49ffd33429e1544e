"""`--compile`: every fast mode's `torch.compile`d stages trace and give the uncompiled fast mode's results.

Here the compiled callables run under TorchDynamo with its `eager` backend: Dynamo captures each stage as a
graph (the step that breaks when code is not traceable, e.g. data-dependent Python control flow or unsupported
ops) and replays it with the same ATen kernels, so the label maps must equal the uncompiled fast mode's
exactly, and the stages must be captured without graph breaks. Exact equality is portable even with seeded
weights whose outputs are near ties: both sides run the same kernels on the same inputs in the same order on
the same machine, so no kernel rounding can differ between them (fast vs faithful is another matter: different
kernels, so tests/test_gis_fast.py compares labels only where the faithful answer is not a near tie).
Inductor's code generation, the default backend behind `--compile`, is not run in CI: on two CPU cores it
compiles a single model for minutes; `python -m vos.bench --modes fast,compiled` measures what it buys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch

from common.data.datasets import DAVIS, Video
from common.data.synthetic import make_davis_sample
from common.hub.checkpoints import SEEDED
from common.inference.fast import FastOptions
from vos.papers import PAPERS, SEMI_SUPERVISED

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
Labels = Dict[int, np.ndarray]


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory) -> Path:
    # 80x128 is the smallest frame HMMN's 1/16 memory grid accepts; 4 frames cover first, memory and later frames
    return make_davis_sample(tmp_path_factory.mktemp("compile") / "DAVIS", n_videos=1, n_frames=4, height=80,
                             width=128, n_objects=2, n_train=0, n_test_dev=0)


@pytest.fixture(scope="module")
def video(davis_root) -> Video:
    return DAVIS(davis_root, year=2017, split="val").videos()[0]


@pytest.fixture
def traced_compile(monkeypatch) -> List[Callable]:
    """Patch `torch.compile` to Dynamo + eager backend and record what it is asked to compile."""
    import torch._dynamo

    real_compile = torch.compile
    compiled: List[Callable] = []

    def compile_with_eager_backend(fn, **kwargs):
        compiled.append(fn)
        return real_compile(fn, **{**kwargs, "backend": "eager"})

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    monkeypatch.setattr(torch, "compile", compile_with_eager_backend)
    yield compiled
    torch._dynamo.reset()


def captured_whole_graphs() -> bool:
    """Dynamo captured graphs, and without graph breaks (each break splits a stage into smaller graphs with
    Python in between, which costs speed under Inductor)."""
    import torch._dynamo

    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"], f"graph breaks: {dict(counters['graph_break'])}"
    return counters["stats"]["unique_graphs"] > 0


def assert_same_labels(compiled: Labels, plain: Labels) -> None:
    assert compiled.keys() == plain.keys()
    for frame in plain:
        np.testing.assert_array_equal(compiled[frame], plain[frame], err_msg=f"frame {frame}")


@pytest.mark.parametrize("paper", SEMI_SUPERVISED)
def test_semi_supervised(paper, video, traced_compile):
    """Through the paper's contract: the same seeded model, fast mode with and without `--compile`."""
    inference = PAPERS[paper].inference

    def labels(fast: FastOptions) -> Labels:
        return inference.make_segmenter(SEEDED, CPU, fast=fast, resize=False)(video)

    plain = labels(FastOptions())
    compiled = labels(FastOptions(compile=True))
    assert traced_compile and captured_whole_graphs()
    assert_same_labels(compiled, plain)


def test_gis(davis_root, video, traced_compile):
    from gis.davis_frames import load_all_frames
    from gis.fast import FastGIS
    from gis.ivos import GISSession
    from gis.model import load_model

    frames = load_all_frames(davis_root, video.name, len(video))
    interaction = np.random.default_rng(0).random((2, 3) + frames.shape[1:3]).astype(np.float32)

    def two_rounds(options: FastOptions) -> np.ndarray:
        net = load_model(SEEDED, CPU)
        session = GISSession(net, frames, 2, fast=FastGIS(net, options))
        labels = []
        for frame in (1, 3):
            with torch.no_grad():
                session.run_round(interaction, frame)
            session.finish_round("RS1")
            labels.append(session.labels())
        return np.stack(labels)

    plain = two_rounds(FastOptions(precision="fp32"))
    compiled = two_rounds(FastOptions(precision="fp32", compile=True))
    assert traced_compile and captured_whole_graphs()
    np.testing.assert_array_equal(compiled, plain)
