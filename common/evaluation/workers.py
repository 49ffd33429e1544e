"""A process pool for CPU-bound scoring that a person can stop with one Ctrl-C.

`map_in_workers(func, items, workers, ...)` is `[func(item) for item in items]` over `workers` processes (in
order, in-process for one); the evaluator scores its sequences with it (`common.evaluation.evaluate`). Started
with forkserver (spawn where there is none), never fork: the caller may hold CUDA or OpenMP state.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.forkserver as forkserver
import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")
# Imported once by the fork server and inherited by every worker (skimage alone takes ~1 s). Not the
# evaluator itself: under `python -m common.evaluation.evaluate` workers would re-run it as their main.
PRELOAD = ["common.evaluation.metrics", "common.data.palette", "skimage.morphology", "tqdm"]


def default_workers() -> int:
    """One process per core, at most 8 (beyond that the PNG reads contend)."""
    return max(1, min(os.cpu_count() or 1, 8))


def map_in_workers(func: Callable[[T], R], items: Sequence[T], workers: int, *, desc: str, unit: str,
                   progress: bool = True) -> List[R]:
    """`[func(item) for item in items]` in a pool of `workers` processes (in-process for one), in order.

    Ctrl-C reaches every process of the group. The helper processes start with SIGINT ignored (a
    disposition that survives exec) and the workers keep ignoring it, so only the parent gets the
    KeyboardInterrupt; it terminates the pool when leaving it, and the user sees one line instead of a
    traceback per process (the fork server's would come from the middle of its imports).
    """
    from tqdm import tqdm

    workers = min(workers, len(items))
    bar = dict(total=len(items), desc=desc, unit=unit, disable=not progress, leave=False)
    if workers <= 1:
        return [func(item) for item in tqdm(items, **bar)]
    with start_pool(workers) as pool:
        return list(tqdm(pool.imap(func, items), **bar))


def start_pool(workers: int) -> "mp.pool.Pool":
    """A pool whose processes all ignore SIGINT; a Ctrl-C while it starts is held back until it is complete
    and then terminates it (stopping a half-built pool makes its new workers fail with tracebacks)."""
    held: List[int] = []
    # forkserver/spawn, not fork: the caller may hold CUDA or OpenMP state that a fork would copy.
    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        with sigint_held():
            forkserver.ensure_running()  # the server forks the workers: they inherit its disposition
        with sigint_held(record=held):  # workers are forked by the server, so a recording handler is fine
            pool = context.Pool(workers, initializer=init_worker)
    else:
        context = mp.get_context("spawn")
        with sigint_held():  # new interpreters keep an ignored SIGINT from the start
            pool = context.Pool(workers, initializer=init_worker)
    if held:
        pool.terminate()
        raise KeyboardInterrupt
    return pool


@contextmanager
def sigint_held(record: Optional[List[int]] = None) -> Iterator[None]:
    """SIGINT ignored during the block (inherited by processes started in it), or noted in `record`."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if record is None else
                             lambda signum, frame: record.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def init_worker() -> None:
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already inherited, unless the pool was started off the main thread
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only compete
