"""TBD's fast mode (`tbd.fast`, `--fast`) agrees with the faithful model.

Agreement = J&F within 0.1 (points, i.e. 0.001 on the 0-1 scale of the DAVIS tables) and label maps within the
parity fixtures' pixel budget, on the parity videos (fixture weights) and on the synthetic DAVIS sample
(seeded weights, through the CLI). Everything runs in float32 on the CPU here; the fp16 autocast used on CUDA
is exercised through CPU bfloat16 autocast, for the dtype plumbing only.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
import torch

from common.data import synthetic
from common.data.palette import read_label_png
from common.evaluation.metrics import object_scores
from common.inference.fast import FastOptions
from common.runtime.errors import UserError
from tbd.fast import FastTBD
from tbd.model import TBD
from tests.agreement import record_top2_gaps
from tests.parity.harness import case_files, fill_, load_case

JF_TOLERANCE = 0.001  # 0.1 J&F points
TIE_MARGIN = 1e-3  # top-two probability gap below which float rounding may pick either label
PIXEL_BUDGET = 0.005  # the parity fixtures' mask tolerance (float kernel noise flips up to ~0.1% of a frame)


pytestmark = pytest.mark.usefixtures("one_thread")


@lru_cache(maxsize=1)
def filled_model() -> TBD:
    model = TBD()
    fill_(model)
    return model.eval()


def seeded_model() -> TBD:
    torch.manual_seed(0)
    return TBD().eval()


def jf(pred: np.ndarray, ref: np.ndarray, ids: List[int]) -> float:
    """Mean of J and F over objects and frames 1.. of `[T, H, W]` label maps (frame 0 is given)."""
    j, f = object_scores(ref[1:], pred[1:], ids)
    return float((j.mean() + f.mean()) / 2)


def video_cases() -> List[Path]:
    return [p for p in case_files("tbd") if load_case(p)["meta"]["kind"] == "video"]


def video_inputs(path: Path):
    case = load_case(path)
    inputs = case["inputs"]
    frames = inputs["frames"]
    imgs = (frames.movedim(-1, -3).contiguous().float() / 255)[None]
    given: List[Optional[torch.Tensor]] = [inputs["given_masks"].get(t) for t in range(frames.shape[0])]
    given = [None if m is None else m.long() for m in given]
    return case, imgs, given, inputs["dist"]


def assert_agree(fast: torch.Tensor, faithful: torch.Tensor, reference: torch.Tensor) -> None:
    """Same shape, same given frame, pixels within budget, J&F against `reference` within 0.1."""
    assert fast.shape == faithful.shape and fast.dtype == faithful.dtype
    assert torch.equal(fast[:, 0], faithful[:, 0])
    differ = (fast != faithful).flatten(-2).double().mean(-1).max().item()
    assert differ <= PIXEL_BUDGET, f"{differ:.4%} of a frame's pixels differ"
    ref = reference[0, :, 0].numpy()
    ids = [int(k) for k in np.unique(ref) if k != 0]
    a, b = jf(fast[0, :, 0].numpy(), ref, ids), jf(faithful[0, :, 0].numpy(), ref, ids)
    assert abs(a - b) <= JF_TOLERANCE, f"J&F fast {a:.5f} vs faithful {b:.5f}"


@pytest.mark.parametrize("case_path", video_cases(), ids=lambda p: p.stem)
@pytest.mark.parametrize("encoder_batch", [None, 3], ids=["cpu-default", "batched-encoder"])
def test_fast_agrees_on_parity_videos(case_path: Path, encoder_batch: Optional[int]):
    case, imgs, given, dist = video_inputs(case_path)
    model = filled_model()
    with torch.no_grad():
        faithful = model(imgs, given, dist, None)["masks"]
    fast = FastTBD(model, encoder_batch=encoder_batch)(imgs, given, dist, None)["masks"]
    # J&F against the official outputs, so the comparison is on the benchmark's own scale.
    assert_agree(fast, faithful, case["outputs"]["masks"].long())


@pytest.mark.parametrize("case_path", video_cases(), ids=lambda p: p.stem)
def test_channels_last_stays_within_the_parity_pixel_budget(case_path: Path):
    """The CUDA layout on the CPU. Only the pixel budget is asserted: oneDNN's channels_last kernels sum in
    another order, which on these fixture weights (logits up to ~80, a quarter of the pixels exact ties)
    moves J&F of video_pad by ~0.11 points; the CPU default therefore stays contiguous."""
    _, imgs, given, dist = video_inputs(case_path)
    model = filled_model()
    with torch.no_grad():
        faithful = model(imgs, given, dist, None)["masks"]
    fast = FastTBD(model, FastOptions(channels_last=True), encoder_batch=2)(imgs, given, dist, None)["masks"]
    assert torch.equal(fast[:, 0], faithful[:, 0])
    assert (fast != faithful).flatten(-2).double().mean(-1).max().item() <= PIXEL_BUDGET


def test_fast_leaves_the_faithful_model_untouched():
    model = seeded_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = FastTBD(model, FastOptions(channels_last=True))
    assert fast.model is not model and fast.model.vos.encoder.conv0.weight.is_contiguous(
        memory_format=torch.channels_last)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) and value.is_contiguous(), name
    assert set(fast.model.state_dict()) == set(before)  # no new parameters: the same checkpoints load


def faithful_with_decided(model: TBD, imgs, given, val_frame_ids, monkeypatch):
    """The faithful masks and, per aggregated frame (1.. in order), which pixels are decided: their top-two
    gap is at least TIE_MARGIN, so no CPU's kernel rounding can change their label."""
    import tbd.model as faithful_module
    from common.modeling.padding import centered_padding, unpad
    from tbd.model import STRIDE

    with monkeypatch.context() as patch, torch.no_grad():
        gaps = record_top2_gaps(patch, faithful_module)
        masks = model(imgs, given, None, val_frame_ids)["masks"]
    padding = centered_padding(imgs.shape[-2], imgs.shape[-1], STRIDE)
    return masks, [unpad(g, padding) >= TIE_MARGIN for g in gaps]


def test_objects_entering_mid_video_and_output_frames(monkeypatch):
    """YouTube-VOS bookkeeping: a later object, its frame always output, other frames only when listed.

    Seeded weights on noise leave many pixels near ties, where the label is each CPU's kernel rounding
    (J&F moved by 0.0012 on one CPU); so labels are compared where the faithful answer is decided, and
    the given and empty frames exactly."""
    model = seeded_model()
    torch.manual_seed(1)
    imgs = torch.rand(1, 6, 3, 40, 56)
    first = torch.zeros(1, 1, 40, 56, dtype=torch.long)
    first[..., 5:20, 5:20] = 1
    first[..., 22:38, 4:18] = 2
    later = torch.zeros(1, 1, 40, 56, dtype=torch.long)
    later[..., 20:35, 30:50] = 3
    given = [first, None, None, later, None, None]
    faithful, decided = faithful_with_decided(model, imgs, given, [0, 3, 5], monkeypatch)
    fast = FastTBD(model, FastOptions())(imgs, given, None, [0, 3, 5])["masks"]
    assert fast.shape == faithful.shape == (1, 3, 1, 40, 56)
    assert torch.equal(fast[:, 0], faithful[:, 0])
    assert torch.equal(fast[0, 1, 0][later[0, 0] != 0], later[0, 0][later[0, 0] != 0])  # the given object wins
    assert_equal_where_decided(fast[0, 1:, 0], faithful[0, 1:, 0], [decided[2], decided[4]])  # frames 3 and 5

    # No object in frame 0 yet: nothing to track until frame 3 (as the faithful model).
    empty = [torch.zeros_like(first), None, None, later, None, None]
    faithful, decided = faithful_with_decided(model, imgs, empty, None, monkeypatch)
    fast = FastTBD(model, FastOptions())(imgs, empty, None, None)["masks"]
    assert fast.shape == faithful.shape == (1, 6, 1, 40, 56)
    assert torch.equal(fast[:, :3], faithful[:, :3])  # empty frames, then the given one
    assert_equal_where_decided(fast[0, 3:, 0], faithful[0, 3:, 0], decided)  # aggregated from frame 3 on


def assert_equal_where_decided(fast: torch.Tensor, faithful: torch.Tensor, decided: List[torch.Tensor]) -> None:
    decided_t = torch.stack(decided)
    assert decided_t.shape == faithful.shape
    assert decided_t.double().mean() >= 0.3, "too few decided pixels for the comparison to mean anything"
    wrong = (fast != faithful) & decided_t
    assert not wrong.any(), f"{int(wrong.sum())} decided pixels differ"


def test_reannotated_id_falls_back_to_the_faithful_path():
    """An id given again later is tracked twice by the reference; only the faithful path repeats that."""
    model = seeded_model()
    torch.manual_seed(2)
    imgs = torch.rand(1, 4, 3, 32, 48)
    first = torch.zeros(1, 1, 32, 48, dtype=torch.long)
    first[..., 4:16, 4:20] = 1
    again = torch.zeros_like(first)
    again[..., 10:28, 20:40] = 1
    given = [first, None, again, None]
    with torch.no_grad():
        faithful = model(imgs, given, None, None)["masks"]
    fast = FastTBD(model, FastOptions())(imgs, given, None, None)["masks"]
    assert torch.equal(fast, faithful)


@pytest.mark.parametrize("autocast_decoder", [False, True], ids=["encoder", "decoder-too"])
def test_autocast_paths_run(autocast_decoder: bool):
    """The autocast plumbing (fp16 on CUDA) via CPU bfloat16: key, matching and aggregation stay float32."""
    case, imgs, given, dist = video_inputs(video_cases()[0])
    fast = FastTBD(filled_model(), FastOptions(precision="bf16", channels_last=True), encoder_batch=2,
                   autocast_decoder=autocast_decoder)
    assert fast.amp_dtype == torch.bfloat16
    keys = []
    hook = fast.model.vos.matcher.conv.register_forward_hook(lambda m, a, out: keys.append(out.dtype))
    masks = fast(imgs, given, dist, None)["masks"]
    hook.remove()
    assert keys and set(keys) == {torch.float32}
    assert masks.shape == case["outputs"]["masks"].shape and masks.dtype == torch.int64
    assert torch.equal(masks[:, 0], given[0])
    assert set(masks.unique().tolist()) <= {0, 1, 2}


def test_fast_is_inference_only():
    with pytest.raises(ValueError, match="batch size 1"):
        FastTBD(seeded_model())(torch.rand(2, 2, 3, 32, 32), [torch.zeros(2, 1, 32, 32, dtype=torch.long), None])


def test_default_options_per_device(monkeypatch):
    """`FastOptions()` ("auto") resolves to TBD's verified choice for the model's device; explicit options win."""
    import tbd.fast

    cpu = FastTBD(seeded_model())
    assert cpu.amp_dtype is None and not cpu.autocast_decoder and not cpu.channels_last and cpu.encoder_batch == 1
    monkeypatch.setattr(tbd.fast, "device_of", lambda model: torch.device("cuda"))  # the choice, not the kernels
    cuda = FastTBD(seeded_model())
    assert cuda.amp_dtype == torch.float16 and not cuda.autocast_decoder and cuda.channels_last
    assert cuda.encoder_batch == 4
    chosen = FastTBD(seeded_model(), FastOptions(precision="fp32", channels_last=False), encoder_batch=2)
    assert chosen.amp_dtype is None and not chosen.channels_last and chosen.encoder_batch == 2


def test_fast_is_a_module_with_the_official_keys_under_model():
    """An `nn.Module` (the contract), its state_dict `model.` + the official keys, compiled or not."""
    model = seeded_model()
    fast = FastTBD(model)
    assert isinstance(fast, torch.nn.Module)
    assert set(fast.state_dict()) == {f"model.{k}" for k in model.state_dict()}


def test_cli_fast_agrees_on_synthetic_sample(tmp_path: Path, monkeypatch):
    """`python -m tbd.run --test --fast` vs the faithful run on the synthetic DAVIS sample (seeded weights)."""
    import tbd.inference
    import tbd.run

    davis = synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=2, n_frames=5, height=64, width=112,
                                        n_objects=3, n_train=0, n_test_dev=0)
    torch.manual_seed(0)
    weights = tmp_path / "seeded.pth"
    torch.save(TBD().state_dict(), weights)
    rows = {}
    for mode, extra in (("faithful", []), ("fast", ["--fast"])):
        monkeypatch.setattr(tbd.run, "run_sets", _recording(tbd.run.run_sets, rows, mode))
        tbd.run.main(["--test", "--davis", str(davis), "--sets", "davis17-val", "--weights", str(weights),
                      "--output", str(tmp_path / mode), "--no-resize", "--device", "cpu"] + extra)
    a, b = rows["faithful"]["davis17-val"], rows["fast"]["davis17-val"]
    assert abs(a["J&F-Mean"] - b["J&F-Mean"]) <= JF_TOLERANCE, (a["J&F-Mean"], b["J&F-Mean"])
    pngs = sorted((tmp_path / "faithful" / "davis17-val").rglob("*.png"))
    assert len(pngs) == 2 * 5
    for png in pngs:
        other = tmp_path / "fast" / png.relative_to(tmp_path / "faithful")
        differ = (read_label_png(png) != read_label_png(other)).mean()
        assert differ <= PIXEL_BUDGET, f"{png.name}: {differ:.4%}"

    # --precision and --autocast-decoder reach FastTBD (CPU bfloat16 here: a run, not an agreement check)
    built = []
    monkeypatch.setattr(tbd.inference, "FastTBD", lambda *args, **kwargs: built.append(FastTBD(*args, **kwargs)) or built[-1])
    tbd.run.main(["--test", "--davis", str(davis), "--sets", "davis17-val", "--weights", str(weights),
                  "--output", str(tmp_path / "bf16"), "--no-resize", "--device", "cpu", "--fast", "--precision", "bf16",
                  "--autocast-decoder"])
    assert len(built) == 1 and built[0].amp_dtype == torch.bfloat16 and built[0].autocast_decoder

    for flag in (["--compile"], ["--precision", "bf16"], ["--autocast-decoder"]):
        with pytest.raises(UserError, match=f"{flag[0]} .*add --fast"):
            tbd.run.main(["--test", "--davis", str(davis), "--sets", "davis17-val", "--weights", str(weights),
                          "--output", str(tmp_path / "x"), "--device", "cpu"] + flag)


def _recording(run_sets, rows: dict, mode: str):
    def wrapped(*args, **kwargs):
        rows[mode] = run_sets(*args, **kwargs)
        return rows[mode]
    return wrapped


def test_two_process_torchrun_test_run_matches_single_process(tmp_path: Path, monkeypatch):
    """`torchrun --nproc_per_node=2 -m tbd.run --test` (gloo): the same PNGs and scores as one process."""
    import tbd.run
    from tests.test_distributed import TORCHRUN_ENV, torchrun

    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    davis = synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=3, n_frames=3, height=32, width=48,
                                        n_train=0, n_test_dev=0)
    torch.manual_seed(0)
    weights = tmp_path / "seeded.pth"
    torch.save(TBD().state_dict(), weights)
    common = ["--test", "--davis", str(davis), "--sets", "davis17-val", "--weights", str(weights), "--no-resize",
              "--device", "cpu"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    tbd.run.main(common + ["--output", str(single)])
    text = torchrun("tbd.run", *common, "--output", str(multi))

    assert text.count("Global results for val") == 1, text[-3000:]  # rank 0 alone scores and prints the table
    files = sorted(p.relative_to(single) for p in single.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) == 3 * 3
    assert sorted(p.relative_to(multi) for p in multi.rglob("*") if p.is_file()) == files
    for f in files:  # PNGs written by both ranks, CSVs by rank 0
        assert (multi / f).read_bytes() == (single / f).read_bytes(), f
