"""HMMN `--fast` (hmmn.fast) agrees with the faithful path: J&F within 0.1, on CPU.

Parity videos: the faithful path reproduces the official `pred` (tests/parity/test_hmmn.py; J&F
100 up to reference ties), so fast mode must score J&F >= 99.9 against that `pred`. Synthetic
sample: the two CLI runs' J&F-Mean differ by at most 0.1.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data.palette import read_label_png
from common.data.synthetic import make_davis_sample, make_ytvos_sample
from common.evaluation.evaluate import evaluate
from common.evaluation.metrics import object_scores
from common.inference.fast import FastOptions
from common.runtime.errors import UserError
from hmmn import eval_davis
from hmmn.fast import FastHMMN, FastKernelGuidedMemory, FastTopkGuidedMemory
from hmmn.inference import propagate
from hmmn.model import HMMN, KernelGuidedMemory, TopkGuidedMemory
from tests.parity.harness import PARITY_ROOT, fill_, load_case

JF_TOLERANCE = 0.1  # percent, the "beyond noise"
VIDEO_CASES = ("video_2obj", "video_2obj_scaled", "video_pad", "video_pad_scaled")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def filled_model() -> HMMN:
    model = HMMN()
    fill_(model)
    return model.eval()


def jf_percent(gt: np.ndarray, pred: np.ndarray, num_objects: int) -> float:
    """DAVIS J&F (first and last frame excluded) of label maps `[T, H, W]`, in percent."""
    j, f = object_scores(gt[1:-1], pred[1:-1], range(1, num_objects + 1))
    return 100 * (j.mean() + f.mean()) / 2


@pytest.mark.parametrize("name, options", [
    *(pytest.param(name, None, id=name) for name in VIDEO_CASES),
    pytest.param("video_pad_scaled", FastOptions(channels_last=False), id="video_pad_scaled-contiguous"),
])
def test_fast_mode_matches_parity_videos(name: str, options, filled_model: HMMN) -> None:
    case = load_case(PARITY_ROOT / "hmmn" / f"{name}.pt")
    model = copy.deepcopy(filled_model)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for prefix, factor in case["meta"].get("post_fill_scale", {}).items():
            params[f"{prefix}.weight"].mul_(factor)
            params[f"{prefix}.bias"].mul_(factor)
    fast = FastHMMN(model, options)
    inputs = case["inputs"]
    frames = inputs["Fs"][0].permute(1, 2, 3, 0).numpy()
    first = inputs["M0"].float()
    n = int(inputs["num_objects"][0])
    preds = [first[0].argmax(dim=0)]
    with torch.no_grad():
        for _, _, probs in propagate(fast, frames, first, n, case["meta"]["Mem_every"]):
            preds.append(probs[0].argmax(dim=0))
    pred = torch.stack(preds).numpy()
    jf = jf_percent(case["outputs"]["pred"].numpy(), pred, n)
    assert jf >= 100 - JF_TOLERANCE, f"{name}: fast-mode J&F {jf:.3f} against the official pred"


def test_fast_options_choose_precision_layout_and_compile() -> None:
    """`--precision auto` is float32 (the verified setting); bf16/fp16 autocast the convolutions."""
    net = HMMN()
    default = FastHMMN(copy.deepcopy(net))
    assert default.dtype is None
    assert default.describe() == "fast mode: float32 convolutions, channels_last, float32 matching"
    assert default.net.Encoder_Q.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert FastHMMN(copy.deepcopy(net), FastOptions(precision="fp32")).dtype is None
    half = FastHMMN(copy.deepcopy(net), FastOptions(precision="fp16", channels_last=False, compile=True))
    assert half.dtype == torch.float16
    assert half.describe() == "fast mode: fp16 autocast convolutions, contiguous, float32 matching, torch.compile"
    assert half.net.Encoder_Q.conv1.weight.is_contiguous()
    assert FastHMMN(copy.deepcopy(net), FastOptions(precision="bf16")).dtype == torch.bfloat16


def test_fast_topk_matching_equals_faithful() -> None:
    """Chunked gathers (a tiny chunk budget forces many chunks) give the faithful read-out."""
    torch.manual_seed(0)
    b, slots, h, w = 2, 2, 5, 8
    guide = torch.rand(b, slots * h * w, h * w).softmax(dim=1)
    mem_key, mem_value = torch.randn(b, 16, slots, 2 * h, 2 * w), torch.randn(b, 24, slots, 2 * h, 2 * w)
    query = torch.randn(b, 16, 2 * h, 2 * w)
    with torch.no_grad():
        ref = TopkGuidedMemory(32)(mem_key, mem_value, query, guide)
        import hmmn.fast as fast_module
        budget = fast_module._chunk_budget
        fast_module._chunk_budget = lambda device: 1  # one query cell per chunk
        try:
            got = FastTopkGuidedMemory(32)(mem_key, mem_value, query, guide)
        finally:
            fast_module._chunk_budget = budget
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(got[1], ref[1]) and torch.equal(got[2], ref[2])


def test_fast_kernel_memory_keeps_flow_state_and_read() -> None:
    torch.manual_seed(0)
    b, h, w = 2, 5, 8
    ref, fast = KernelGuidedMemory(), FastKernelGuidedMemory()
    keys, values = torch.randn(b, 16, 3, h, w), torch.randn(b, 8, 3, h, w)
    with torch.no_grad():
        for slots in (1, 2, 2, 3):
            query_key, query_value = torch.randn(b, 16, h, w), torch.randn(b, 8, h, w)
            args = (keys[:, :, :slots], values[:, :, :slots], query_key, query_value)
            (read_ref, att_ref), (read_fast, att_fast) = ref(*args), fast(*args)
            assert torch.equal(fast.state.table, ref.state.table)
            torch.testing.assert_close(att_fast, att_ref)
            torch.testing.assert_close(read_fast, read_ref, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# The CLI on the synthetic sample
# --------------------------------------------------------------------------------------------

H, W = 64, 128


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hmmn_fast_data")
    torch.manual_seed(0)
    weights = root / "HMMN_weights.pth"
    torch.save(HMMN().state_dict(), weights)
    return {
        "davis": make_davis_sample(root / "DAVIS", n_videos=2, n_frames=5, height=H, width=W,
                                   n_train=1, n_test_dev=1),
        "ytvos": make_ytvos_sample(root / "YouTubeVOS", n_videos=3, n_frames=6, height=H, width=W),
        "weights": weights,
    }


def run(data, out: Path, *args: str) -> None:
    assert eval_davis.main([*args, "--weights", str(data["weights"]), "--output", str(out), "--device", "cpu"]) == 0


def test_fast_cli_agrees_on_the_synthetic_sample(data, tmp_path, capsys) -> None:
    scores = {}
    for mode in ("faithful", "fast"):
        extra = ["--fast"] if mode == "fast" else []
        run(data, tmp_path / mode, "-s", "val", "-y", "17", "-D", str(data["davis"]), *extra)
        scores[mode] = evaluate(str(data["davis"]), tmp_path / mode, split="val", year=2017)
    assert "fast mode: float32" in capsys.readouterr().out
    faithful, fast = (scores[m].global_row["J&F-Mean"] for m in ("faithful", "fast"))
    assert abs(fast - faithful) * 100 <= JF_TOLERANCE  # the table holds fractions, the tolerance is in points


def test_fast_cli_youtube_vos_objects_entering_later(data, tmp_path) -> None:
    """The mid-video-object path (object_probabilities + given masks) in fast mode."""
    for mode in ("faithful", "fast"):
        extra = ["--fast"] if mode == "fast" else []
        run(data, tmp_path / mode, "-s", "valid", "-y", "18", "-D", str(data["ytvos"]), *extra)
    pngs = sorted((tmp_path / "faithful" / "Annotations").rglob("*.png"))
    assert pngs
    agree = [np.mean(read_label_png(p) == read_label_png(tmp_path / "fast" / p.relative_to(tmp_path / "faithful")))
             for p in pngs]
    assert min(agree) >= 0.999


@pytest.mark.parametrize("flags", [["--compile"], ["--precision", "fp32"]])
def test_fast_flags_without_fast_are_a_user_error(data, tmp_path, flags) -> None:
    with pytest.raises(UserError, match="--fast"):
        run(data, tmp_path / "out", "-s", "val", "-y", "17", "-D", str(data["davis"]), *flags)


def test_two_process_torchrun_writes_the_single_process_pngs(data, tmp_path, capsys) -> None:
    """`torchrun --nproc_per_node=2 -m hmmn.eval_davis` (gloo): each rank its own video, rank 0 scores."""
    from tests.test_distributed import torchrun

    args = ["-s", "val", "-y", "17", "-D", str(data["davis"]), "--weights", str(data["weights"]), "--device", "cpu"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert eval_davis.main([*args, "--output", str(single)]) == 0
    capsys.readouterr()
    text = torchrun("hmmn.eval_davis", *args, "--output", str(multi))
    assert text.count("Global results for val") == 1, text[-3000:]  # rank 0 alone scores and prints
    assert "[rank 0/2]" in text and "[rank 1/2]" in text
    pngs = sorted(single.rglob("*.png"))
    assert len(pngs) == 2 * 5
    for png in pngs:
        assert (multi / png.relative_to(single)).read_bytes() == png.read_bytes(), png
    assert (multi / "global_results-val.csv").read_text() == (single / "global_results-val.csv").read_text()
