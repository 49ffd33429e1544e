"""HMMN pieces that the parity fixtures do not reach: memory growth, schedule, padding, flow-state guards."""
from __future__ import annotations

import pytest
import torch

import hmmn.inference as inference
from common.runtime.errors import UserError
from hmmn.inference import GrowingSlots, MemoryBank, check_frame_size
from hmmn.model import HMMN, KernelGuidedMemory, crop_padding, padding_to_multiple


def test_growing_slots_doubles_and_keeps_contents() -> None:
    slots = GrowingSlots(torch.zeros(2, 3, 1, 4, 5), capacity=2)
    buffers = set()
    for t in range(9):
        slots.write(t, torch.full((2, 3, 1, 4, 5), float(t)))
        buffers.add(slots.buffer.data_ptr())
    assert slots.buffer.shape[2] == 16 and len(buffers) == 4  # 2 -> 4 -> 8 -> 16: log growth, not per frame
    view = slots.view(9)
    assert view.shape == (2, 3, 9, 4, 5)
    assert torch.equal(view[0, 0, :, 0, 0], torch.arange(9.0))
    view.view(2, 3, 9 * 20)  # the matcher flattens (T, h, w) without a copy


def test_memory_bank_follows_upstream_schedule() -> None:
    """/16 memory lengths 1,2,2,2,2,2,3 for 8 frames with Mem_every=5; /8,/4 = [first, previous]."""
    bank = MemoryBank(initial_capacity=1)
    keep = set(range(0, 8, 5))
    r4_lengths, fine_first = [], []
    for t in range(1, 8):
        frame_id = float(t - 1)
        memory = tuple(torch.full((1, 2, 1, 2, 2), frame_id) for _ in range(6))
        bank.add_previous(memory)
        k4, _, k3, _, _, _ = bank.tensors()
        r4_lengths.append(k4.shape[2])
        fine_first.append((k3[0, 0, :, 0, 0].tolist()))
        assert k4[0, 0, -1, 0, 0].item() == frame_id  # newest /16 slot = previous frame
        if t - 1 in keep:
            bank.keep_previous()
    assert r4_lengths == [1, 2, 2, 2, 2, 2, 3]
    assert fine_first == [[0.0]] + [[0.0, float(t - 1)] for t in range(2, 8)]
    assert bank.tensors()[0][0, 0, :, 0, 0].tolist() == [0.0, 5.0, 6.0]


def test_padding_matches_upstream_pad_divide_by() -> None:
    assert padding_to_multiple(87, 149) == (5, 6, 4, 5)  # README: 4 top, 5 bottom, 5 left, 6 right
    assert padding_to_multiple(96, 160) == (0, 0, 0, 0)
    x = torch.arange(96 * 160.0).view(1, 1, 96, 160)
    assert crop_padding(x, (5, 6, 4, 5)).shape == (1, 1, 87, 149)


def test_flow_state_needs_a_single_frame_call_first() -> None:
    matcher = KernelGuidedMemory()
    mem_k, mem_v = torch.randn(1, 8, 2, 6, 6), torch.randn(1, 4, 2, 6, 6)
    q_k, q_v = torch.randn(1, 8, 6, 6), torch.randn(1, 4, 6, 6)
    with pytest.raises(RuntimeError, match="1-frame call"):
        matcher(mem_k, mem_v, q_k, q_v)
    matcher(mem_k[:, :, :1], mem_v[:, :, :1], q_k, q_v)
    out, attention = matcher(mem_k, mem_v, q_k, q_v)
    assert out.shape == (1, 8, 6, 6) and attention.shape == (1, 72, 36)
    assert torch.allclose(attention.sum(dim=1), torch.ones(1, 36))
    with pytest.raises(RuntimeError, match="one frame per call"):
        matcher(torch.randn(1, 8, 4, 6, 6), torch.randn(1, 4, 4, 6, 6), q_k, q_v)


def test_too_small_frames_are_a_user_error() -> None:
    check_frame_size(64, 128)
    with pytest.raises(UserError, match="32 cells"):
        check_frame_size(48, 64)


def test_growing_memory_gives_bitwise_the_same_as_concatenated_memory(monkeypatch) -> None:
    """Strided views of the growing buffer vs contiguous copies (what upstream's torch.cat feeds the
    matchers): identical logits, also across buffer growth (capacity 1 -> 2 -> 4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = HMMN().eval()
        generator = torch.Generator().manual_seed(1)
        frames = (torch.rand(7, 64, 128, 3, generator=generator) * 255).to(torch.uint8).numpy()
        first = torch.zeros(1, 3, 64, 128)
        first[0, 0] = 1
        first[0, 0, 10:30, 20:60], first[0, 1, 10:30, 20:60] = 0, 1
        first[0, 0, 35:60, 70:120], first[0, 2, 35:60, 70:120] = 0, 1

        def run():
            return [logits for _, logits, _ in inference.propagate(model, frames, first, 2, mem_every=2)]

        monkeypatch.setattr(inference, "INITIAL_MEMORY_SLOTS", 1)
        grown = run()
        as_view = MemoryBank.tensors
        monkeypatch.setattr(MemoryBank, "tensors", lambda self: tuple(t.contiguous() for t in as_view(self)))
        concatenated = run()
    finally:
        torch.set_num_threads(threads)
    assert model.Memory.state.slots == 4  # frames 0, 2, 4 kept + the previous frame
    assert all(torch.equal(a, b) for a, b in zip(grown, concatenated))
