"""Device choice, seeding, CUDA-synchronised timing and peak-memory reporting.

torch is imported inside the functions: entry points add `--device` to their parser from here, and
`--help` or a mistyped flag must answer without loading torch."""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from typing import TYPE_CHECKING, Optional

from common.runtime.errors import UserError

if TYPE_CHECKING:
    import torch


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


NO_GPU_NOTICE = "notice: no GPU found; running on the CPU (slow)"


def pick_device(requested: Optional[str] = None) -> torch.device:
    """The requested device, or cuda when available else cpu.

    Every command-line entry point picks its device here, so all of them say the same thing when a GPU
    was wanted or expected and none is there: one notice line on stderr. Asking for CUDA on a machine
    without it falls back to CPU instead of failing deep inside the first `.to()`; `--device cpu` is
    taken as it is, silently.
    """
    import torch

    name = requested or default_device()
    device = _parse_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"{NO_GPU_NOTICE} (--device {name} requested)", file=sys.stderr)
        return torch.device("cpu")
    if requested is None and device.type == "cpu":
        print(NO_GPU_NOTICE, file=sys.stderr)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there is no GPU {device.index} (this machine has "
                        f"{torch.cuda.device_count()}, numbered from 0); pass cuda, cuda:N or cpu")
    return device


def _parse_device(name: str) -> "torch.device":
    """`torch.device(name)`, with a name torch does not know (`--device foo`) as one `UserError`."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r} is not a device name; pass cuda, cuda:N (the GPU's number) or cpu"
                        ) from None
    available = getattr(getattr(torch, device.type, None), "is_available", None)  # torch.mps, torch.xpu, ...
    if device.type == "meta" or (device.type not in ("cpu", "cuda") and available is not None and not available()):
        raise UserError(f"--device {name}: no {device.type} device on this machine; pass cuda, cuda:N or cpu")
    return device


def sleeping_cpu_threads() -> None:
    """Let OpenMP threads that wait for work sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE` unless the
    environment sets it). Spinning is a little faster on an idle CPU, but when anything else wants a core
    (a browser, another job) the spinning threads take the time the working one needs: on a 2-core CPU
    shared with one busy process a GIS round took twice as long (README, "Working size"). torch's OpenMP
    reads the setting once, when torch is imported: afterwards this does nothing."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cuda, cuda:1 or cpu (default: cuda if available, else cpu)")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) the way the official trainers do."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall-clock timer that waits for queued CUDA work before reading the clock."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed = 0.0
        self._start: Optional[float] = None

    def __enter__(self) -> "Stopwatch":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        assert self._start is not None
        self.elapsed += time.perf_counter() - self._start
        self._start = None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """CUDA max allocated memory on a GPU; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model (or a fast-mode wrapper, also an `nn.Module`) holds its weights on."""
    return next(model.parameters()).device
