"""Split a layer's work over the CPU cores with Python threads (NumPy backend only).

NumPy releases the GIL inside copies, ufunc loops and BLAS calls, so threads that each take
a slice of the batch (a range of image blocks, a range of samples of an IF layer) run in
parallel. This parallelises what BLAS threads leave on one core: im2col, bias, the IF
updates, pooling. Each slice does exactly the work it would do alone, so results do not
depend on the number of threads (sums over slices, such as a weight gradient, are added in
slice order).

While the slices run, the BLAS must stay on one thread per call, or the two levels of
threads fight for the cores; and OpenBLAS's idle threads busy-wait for a while after every
multi-threaded call, so a small product between two sections left them spinning on the
cores our workers needed (a training step on 2 cores was slower than on one: 614 vs 941
images/s on vgg_cpu with the BLAS held). So ``hold_blas()`` holds the BLAS to one thread for
the whole of a fast simulation or training run, and restores it after; nothing is held at
import or outside the fast engine.

The number of workers is ``ICSNN_NUM_THREADS`` if set, else the BLAS thread count (which
follows ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``). BLAS calls are split only when the
BLAS is an OpenBLAS whose thread count we can set (blas.py).
"""
from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext

from .blas import openblas

# Below this many elements of work a split costs more than it saves.
MIN_PARALLEL_ELEMENTS = 1 << 16

_pool = None
_lock = threading.Lock()      # one parallel section at a time (BLAS threads are global)
_inside = threading.local()   # set in workers: nested sections run sequentially
_held = {"depth": 0, "saved": None}


@functools.lru_cache(maxsize=1)
def num_workers() -> int:
    """Threads a parallel section uses (1: everything runs on the caller's thread)."""
    env = os.environ.get("ICSNN_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    lib = openblas()
    return max(1, int(lib.get_threads())) if lib is not None else 1


def blas_splittable() -> bool:
    """True when BLAS calls may run in parallel slices (the BLAS held to one thread meanwhile)."""
    return num_workers() > 1 and openblas() is not None


@contextmanager
def hold_blas():
    """Hold the BLAS to one thread inside the block (our workers own the cores), then give
    back the count it had. Nested holds are fine; with one worker nothing changes."""
    lib = openblas()
    if lib is None or num_workers() < 2:
        yield
        return
    with _lock:
        if _held["depth"] == 0:
            _held["saved"] = int(lib.get_threads())
            lib.set_threads(1)
        _held["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _held["depth"] -= 1
            if _held["depth"] == 0:
                lib.set_threads(_held["saved"])


def parallel_for(fn, n: int, elements: int, blas: bool = False):
    """Run fn(i0, i1) over a split of range(n) into contiguous slices, one per worker.

    Returns the list of results in slice order. Runs fn(0, n) on the caller's thread when
    there is one worker, fewer than two items, less than MIN_PARALLEL_ELEMENTS of work, or
    when called from inside a parallel section. ``blas=True`` says fn calls BLAS: it is then
    split only if the BLAS can be held to one thread meanwhile.
    """
    w = min(num_workers(), n)
    if (w < 2 or elements < MIN_PARALLEL_ELEMENTS or getattr(_inside, "on", False)
            or (blas and not blas_splittable())):
        return [fn(0, n)]
    global _pool
    bounds = [n * i // w for i in range(w + 1)]

    def run(i):
        _inside.on = True
        try:
            return fn(bounds[i], bounds[i + 1])
        finally:
            _inside.on = False

    with hold_blas() if blas else nullcontext():
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max(1, num_workers() - 1), thread_name_prefix="icsnn")
            futures = [_pool.submit(run, i) for i in range(1, w)]
            try:
                first = run(0)
            finally:
                wait(futures)                    # never release the BLAS under a running slice
        return [first] + [f.result() for f in futures]
