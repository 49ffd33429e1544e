"""BMVOS fast mode (`bmvos.fast.FastBMVOS`) against the faithful forward: J&F within 0.1 (points of %) on the parity
videos (fill_ weights) and on the synthetic sample, plus what the fixtures do not reach: objects entering
mid-video, frame selection, the faithful fallback, the mixed-precision path and the CLI flags."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import bmvos.fast
from bmvos.fast import FastBMVOS
from bmvos.inference import segment_video
from bmvos.model import BMVOS, similarity
from common.data.synthetic import make_davis_sample, make_ytvos_sample
from common.inference.fast import FastOptions
from common.runtime.errors import UserError
from tests.agreement import JF_TOLERANCE, jf_percent, parity_video_inputs, record_top2_gaps
from tests.parity.harness import fill_

pytestmark = pytest.mark.usefixtures("one_thread")

HALF_MARGIN = 0.1  # float32 top-two gap beyond which fp16 autocast must keep the label


@pytest.fixture(scope="module")
def filled(one_thread) -> BMVOS:
    model = BMVOS()
    fill_(model)
    return model.eval()


@pytest.fixture(scope="module")
def seeded(one_thread) -> BMVOS:
    torch.manual_seed(0)
    return BMVOS().eval()


def fast_twin(model: BMVOS, **options) -> FastBMVOS:
    """Fast mode with `FastOptions(**options)` on its own copy (channels_last converts the model in place)."""
    return FastBMVOS(copy.deepcopy(model), FastOptions(**options))


@pytest.mark.parametrize("name", ["video_2obj.pt", "video_pad.pt"])
def test_parity_videos_agree(filled, name):
    imgs, given = parity_video_inputs("bmvos", name)
    with torch.no_grad():
        faithful = filled(imgs, given, None)
        fast = fast_twin(filled)(imgs, given, None)
    assert fast.frame_ids == faithful.frame_ids
    assert fast.masks.shape == faithful.masks.shape and fast.masks.dtype == torch.long
    assert torch.equal(fast.masks[:, 0], faithful.masks[:, 0])
    # measured: 1 differing pixel of 77k (2obj) and 2 of 65k (pad): float rounding at near-ties
    a, b = faithful.masks[0, :, 0].numpy(), fast.masks[0, :, 0].numpy()
    assert jf_percent(a, b) >= 100 - JF_TOLERANCE
    assert (fast.masks != faithful.masks).double().mean().item() <= 1e-4


def test_batched_matching_is_bitwise_the_faithful_one(filled, monkeypatch):
    """The matcher's rules run batched over (object, bg/fg) rows on a shared similarity volume, also in
    blocks of rows: the products, top-K cuts and maxima are exactly the per-object ones."""
    gen = torch.Generator().manual_seed(0)
    h, w, n = 4, 6, 3
    key0, key1 = (torch.nn.functional.normalize(torch.randn(1, 8, h, w, generator=gen), dim=1) for _ in range(2))
    segs = torch.rand(n, 2, h, w, generator=gen)
    sim = similarity(key0, key1)
    matcher = filled.vos.matcher
    for rule in (matcher._global, matcher._bijective):
        per_object = torch.cat([torch.cat([rule(sim, segs[k:k + 1, 0]), rule(sim, segs[k:k + 1, 1])], dim=1)
                                for k in range(n)])
        assert torch.equal(FastBMVOS._match(rule, sim, segs), per_object)
        with monkeypatch.context() as patch:
            patch.setattr(bmvos.fast, "MATCHING_BLOCK_ELEMENTS", 2 * sim.numel())  # blocks of 2 rows
            assert torch.equal(FastBMVOS._match(rule, sim, segs), per_object)


def test_synthetic_sample_agrees(tmp_path, seeded):
    from common.data.datasets import DAVIS

    root = make_davis_sample(tmp_path / "DAVIS", n_videos=2, n_frames=5, height=64, width=112, n_objects=3)
    dataset = DAVIS(root, 2017, "val")
    fast = fast_twin(seeded)
    for video in dataset.videos():
        faithful_masks = segment_video(seeded, video, resize=False)
        fast_masks = segment_video(fast, video, resize=False)
        assert sorted(fast_masks) == sorted(faithful_masks)
        gt = dataset.gt_masks(video.name)
        a = np.stack([faithful_masks[t] for t in sorted(faithful_masks)])
        b = np.stack([fast_masks[t] for t in sorted(fast_masks)])
        assert abs(jf_percent(gt, a) - jf_percent(gt, b)) <= JF_TOLERANCE, video.name
        assert jf_percent(a, b) >= 100 - JF_TOLERANCE, video.name


def test_objects_entering_mid_video_and_frame_selection(tmp_path, seeded):
    from common.data.datasets import YouTubeVOS

    # the sample's second video starts on frame 5 and its second object enters on frame 10
    root = make_ytvos_sample(tmp_path / "YTVOS", n_videos=2, n_frames=11, height=48, width=80)
    video = YouTubeVOS(root, 2018, "valid").videos()[1]
    given = video.load_given_masks()
    assert any(t > 0 for t in given), "the sample should have an object entering mid-video"
    fast = fast_twin(seeded)
    a = segment_video(seeded, video, resize=False)
    b = segment_video(fast, video, resize=False)
    assert sorted(a) == sorted(b)
    for t in given:  # given frames carry the given objects exactly
        np.testing.assert_array_equal(b[t][given[t] != 0], given[t][given[t] != 0])
    assert np.mean([np.mean(a[t] == b[t]) for t in a]) >= 0.999

    imgs = torch.rand(1, 4, 3, 40, 56)
    first = torch.zeros(1, 1, 40, 56, dtype=torch.long)
    first[..., 5:20, 5:20] = 1
    with torch.no_grad():
        selected = fast(imgs, [first, None, None, None], [10, 12, 13])
        faithful = seeded(imgs, [first, None, None, None], [10, 12, 13])
    assert selected.frame_ids == faithful.frame_ids == [0, 2, 3]
    assert selected.masks.shape == faithful.masks.shape == (1, 3, 1, 40, 56)


def test_unorganisable_inputs_fall_back_to_faithful(seeded):
    """An id given a second time mid-video: fast mode hands the video to the faithful forward."""
    imgs = torch.rand(1, 3, 3, 32, 48)
    first = torch.zeros(1, 1, 32, 48, dtype=torch.long)
    first[..., 2:12, 2:12] = 1
    again = torch.zeros_like(first)
    again[..., 20:30, 30:40] = 1
    with torch.no_grad():
        fast = fast_twin(seeded, channels_last=False)(imgs, [first, None, again], None)
        faithful = seeded(imgs, [first, None, again], None)
    assert torch.equal(fast.masks, faithful.masks) and fast.frame_ids == faithful.frame_ids
    with pytest.raises(ValueError, match="batch 1"):
        fast_twin(seeded)(imgs.expand(2, -1, -1, -1, -1), [first.expand(2, -1, -1, -1), None, None])


def test_mixed_precision_path(seeded, monkeypatch):
    """The autocast path (CUDA uses it; exercised here on the CPU in fp16 and bf16): long masks of the right
    shape, the given frame exact, float32 matching scores fed to the decoder. fp16 must keep the float32
    labels wherever float32's top-two gap is at least HALF_MARGIN (measured: fp16 flips only pixels with
    gaps < 0.02). bf16's numbers are not compared: its 8-bit mantissa flips pixels with gaps up to ~0.3
    on these seeded weights, and CPUs compute it differently (AMX, avx512_bf16, or emulated)."""
    imgs, given = parity_video_inputs("bmvos", "video_2obj.pt")
    imgs, given = imgs[:, :3], given[:3]
    fp32 = fast_twin(seeded)
    with torch.no_grad():
        with monkeypatch.context() as patch:
            gaps = record_top2_gaps(patch, bmvos.fast)
            reference = fp32(imgs, given, None).masks
        decided = torch.stack(gaps) >= HALF_MARGIN  # frames 1.. (the sizes need no padding)
        assert decided.shape == reference[0, 1:, 0].shape and decided.double().mean() >= 0.3
        for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            fast = fast_twin(seeded, precision=precision)
            seen = []
            decode = fast._decoder
            fast._decoder = lambda decoder, feats, matching, mask_feats: (
                seen.append((feats["s16"].dtype, matching.dtype)) or decode(decoder, feats, matching, mask_feats))
            masks = fast(imgs, given, None).masks
            assert masks.dtype == torch.long and masks.shape == reference.shape
            assert torch.equal(masks[:, 0], reference[:, 0])
            assert set(seen) == {(dtype, torch.float32)}
            if dtype == torch.float16:
                wrong = (masks[0, 1:, 0] != reference[0, 1:, 0]) & decided
                assert not wrong.any(), f"fp16 changed {int(wrong.sum())} decided pixels"


def test_options_choose_precision_and_layout(seeded):
    """"auto" is fp16 on CUDA and float32 on the CPU; --precision overrides it on both; channels_last is the
    default layout unless the options turn it off."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    auto = fast_twin(seeded)
    assert (auto.autocast_dtype(cuda), auto.autocast_dtype(cpu)) == (torch.float16, None)
    bf16 = fast_twin(seeded, precision="bf16")
    assert (bf16.autocast_dtype(cuda), bf16.autocast_dtype(cpu)) == (torch.bfloat16, torch.bfloat16)
    assert fast_twin(seeded, precision="fp32").autocast_dtype(cuda) is None
    assert auto.channels_last and auto.model.vos.decoder.blend1.conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    assert not fast_twin(seeded, channels_last=False).channels_last
    assert FastBMVOS(copy.deepcopy(seeded)).options == FastOptions()


def test_cli_fast_and_compile_flag(tmp_path, seeded):
    from bmvos import main_runfile

    root = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=48, width=64)
    weights = tmp_path / "seeded.pth"
    torch.save(seeded.state_dict(), weights)
    out = tmp_path / "out"
    args = ["--dataset", "DAVIS17_val", "--davis", str(root), "--weights", str(weights), "--native-size",
            "--device", "cpu", "--eval-workers", "1"]
    assert main_runfile.main(args + ["--output", str(out / "faithful")]) == 0
    assert main_runfile.main(args + ["--output", str(out / "fast"), "--fast"]) == 0
    faithful = sorted(p.relative_to(out / "faithful") for p in (out / "faithful").rglob("*.png"))
    fast = sorted(p.relative_to(out / "fast") for p in (out / "fast").rglob("*.png"))
    assert faithful == fast and len(fast) == 3
    for flags in (["--compile"], ["--precision", "bf16"]):
        with pytest.raises(UserError, match="--fast"):
            main_runfile.main(args + ["--output", str(out / "x"), *flags])


def test_reproduce_fast(tmp_path, seeded, capsys):
    from bmvos import reproduce

    root = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=48, width=64)
    weights = tmp_path / "seeded.pth"
    torch.save(seeded.state_dict(), weights)
    assert reproduce.main(["--davis", str(root), "--output", str(tmp_path / "out"), "--weights", str(weights),
                           "--device", "cpu", "--native-size", "--fast"]) == 0
    table = capsys.readouterr().out.split("BMVOS reproduction")[1]
    assert "fast mode" in table and "DAVIS17_val" in table
