"""Scale-out with torch.distributed: one context object for evaluation sharding and DDP training.

    ctx = init_distributed(pick_device(args.device))    # torchrun: joins the process group; plain run: no-op
    model = build_model(...).to(ctx.device)              # cuda:<LOCAL_RANK> under torchrun with CUDA
    stats = run_videos(videos, segment, out, device=ctx.device, dist=ctx)   # own shard, then a barrier
    if ctx.is_main:                                      # every rank's videos are on disk now
        print(evaluate(davis_root, out).format_table())

Launch with `torchrun --nproc_per_node=N -m <paper>.<entry> ...` (multi-node: add `--nnodes`, `--node_rank`,
`--master_addr`, `--master_port`, or `--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`). torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; with WORLD_SIZE > 1 the default process group is created
once (NCCL for CUDA devices, gloo on the CPU). Without torchrun (or with one process) nothing is initialised
and everything runs exactly as a plain single-process run.

Videos are assigned to ranks by sorted name, round robin, so a rerun (or a resume with another world size)
assigns them deterministically and every rank writes only its own result folders; the output folder must be
on a filesystem every node sees when rank 0 scores the merged results.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import List, Optional, Sequence, TypeVar, Union

import torch
import torch.distributed as torch_dist

from common.runtime.errors import UserError

T = TypeVar("T")

# Rank 0 alone validates during training and scores J&F after evaluation while the other ranks wait in a
# collective; the default timeout (10 minutes for NCCL) would abort a long DAVIS validation.
TIMEOUT_ENV = "VOS_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 120.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank `rank` of `world_size`, running on `device`."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when several processes share the work (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that scores, zips, prints tables and writes checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank reaches this point (a no-op in a single process)."""
        if not self.enabled:
            return
        if torch_dist.get_backend() == "nccl":  # tell NCCL which GPU this rank uses instead of letting it guess
            torch_dist.barrier(device_ids=[self.device.index or 0])
        else:
            torch_dist.barrier()


def single_process(device: Union[torch.device, str] = "cpu") -> DistContext:
    """The context of a plain run: rank 0 of 1, on `device`."""
    return DistContext(device=torch.device(device))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer; it is set by torchrun "
                        f"(launch with `torchrun --nproc_per_node=N -m ...`, or unset it)") from None


def _timeout() -> timedelta:
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        minutes = float(text) if text else DEFAULT_TIMEOUT_MIN
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={text!r} is not a number of minutes") from None
    return timedelta(minutes=minutes)


def init_distributed(device: Union[torch.device, str]) -> DistContext:
    """Join the torchrun process group if there is one; otherwise return a single-process context.

    Idempotent: a second call (e.g. a second training stage) reuses the existing group. Under torchrun
    with a CUDA device each rank uses `cuda:<LOCAL_RANK>` (the requested index is ignored, as every rank
    must own one GPU); with a CPU device the ranks talk over gloo.
    """
    device = torch.device(device)
    if torch_dist.is_available() and torch_dist.is_initialized():  # already joined (or set up by the caller)
        rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        return DistContext(rank, world_size, local_rank, _rank_device(device, local_rank, world_size))

    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return single_process(device)
    if not torch_dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run without torchrun (one process)")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise UserError(f"WORLD_SIZE={world_size} is set but {' and '.join(missing)} is not; launch with "
                        f"`torchrun --nproc_per_node=N -m ...`, which sets both")
    device = _rank_device(device, local_rank, world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the group exists, so NCCL binds this rank to its own GPU
        backend = "nccl"
    else:
        backend = "gloo"
    torch_dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                  timeout=_timeout())
    atexit.register(destroy_distributed)
    return DistContext(rank, world_size, local_rank, device)


def _rank_device(device: torch.device, local_rank: int, world_size: int) -> torch.device:
    if device.type != "cuda" or world_size <= 1:
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(f"local rank {local_rank} has no GPU of its own (this node has {count}); start at most "
                        f"{count} processes per node (torchrun --nproc_per_node={count})")
    return torch.device("cuda", local_rank)


def destroy_distributed() -> None:
    """Tear the process group down (registered at exit by `init_distributed`; safe to call twice)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def _sort_key(item: object) -> str:
    name = getattr(item, "name", item)
    return str(name)


def shard(items: Sequence[T], ctx: Optional[DistContext]) -> List[T]:
    """This rank's share of `items`: sorted by name (`.name`, else the item itself), then every
    `world_size`-th one starting at `rank`. A single-process context gets all of them, in their order."""
    items = list(items)
    if ctx is None or not ctx.enabled:
        return items
    ordered = sorted(items, key=_sort_key)
    return ordered[ctx.rank::ctx.world_size]
