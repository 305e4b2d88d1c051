"""Split a layer's work over the CPU cores with Python threads (NumPy backend only).

NumPy releases the GIL inside copies, ufunc loops and BLAS calls, so threads that each take
a slice of the batch (a range of im2col blocks, a range of samples of an IF layer) run in
parallel. This parallelises what BLAS threads leave on one core: im2col, bias, the IF
updates, pooling. While the slices run, BLAS is held to one thread per call, so the two
levels of threads never compete for the cores; each slice does exactly the work it would do
alone, so results do not depend on the number of threads (except sums over slices, such as
a weight gradient, which are added in slice order).

The number of workers is ``ICSNN_NUM_THREADS`` if set, else the BLAS thread count (which
follows ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``). BLAS calls are split only when the
BLAS is an OpenBLAS whose thread count we can set; otherwise they stay on the caller's
thread with the BLAS's own threads.

With >= 2 workers and an OpenBLAS we can set, the BLAS is held to one thread from the
moment this module is imported, for the rest of the process, also between sections. Idle
OpenBLAS threads busy-wait for a while after every multi-threaded call; a small BLAS call
between two sections (a weight transform, a linear layer) left them
spinning on the cores the workers needed, which made a training step on 2 cores slower
than on one (measured: 614 -> 941 images/s on vgg_cpu). Holding it from the start, not
from the first section, keeps results bit-for-bit repeatable: OpenBLAS may round a small
product differently with one thread than with two. ``blas_threads()`` lends the cores back
to the BLAS for a large product of your own (the benchmark's plain matmul).
"""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

# Below this many elements of work a split costs more than it saves.
MIN_PARALLEL_ELEMENTS = 1 << 16


class _OpenBLAS:
    """get/set_num_threads of the OpenBLAS that NumPy loaded, found in /proc/self/maps."""

    def __init__(self):
        self.get = self.set = None
        try:
            import numpy  # noqa: F401,PLC0415 - make sure NumPy (and its BLAS) is loaded
            with open("/proc/self/maps") as f:
                paths = sorted({ln.split()[-1] for ln in f
                                if "openblas" in ln.lower() and ".so" in ln})
        except OSError:
            return
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for pre, suf in (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", "")):
                get = getattr(lib, f"{pre}get_num_threads{suf}", None)
                set_ = getattr(lib, f"{pre}set_num_threads{suf}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    self.get, self.set = get, set_
                    return


_blas = None
_pool = None
_workers = None
_blas_threads_before = None   # the BLAS thread count before the workers held it to one
_lock = threading.Lock()      # one parallel section at a time (BLAS threads are global)
_inside = threading.local()   # set in workers: nested sections run sequentially


def _init():
    global _blas, _workers
    if _workers is not None:
        return
    _blas = _OpenBLAS()
    env = os.environ.get("ICSNN_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        _workers = int(env)
    elif _blas.get is not None:
        _workers = max(1, int(_blas.get()))
    else:
        _workers = 1
    if _workers > 1 and _blas.set is not None:
        _hold_blas()


def _hold_blas():
    """Hold the BLAS to one thread from now on (see the module docstring)."""
    global _blas_threads_before
    if _blas_threads_before is None:
        _blas_threads_before = int(_blas.get())
        _blas.set(1)


@contextmanager
def blas_threads(n: int | None = None):
    """Let BLAS calls inside the block use ``n`` threads (default: as many as it had before
    the workers held it to one), e.g. for one large matrix product of your own."""
    _init()
    if _blas.get is None:
        yield
        return
    saved = int(_blas.get())
    with _lock:                              # not while a parallel section runs
        _blas.set(int(n or _blas_threads_before or saved))
    try:
        yield
    finally:
        with _lock:
            _blas.set(saved)


def blas_thread_count() -> int | None:
    """The BLAS's own thread count (before the workers held it to one), None if unknown."""
    _init()
    if _blas.get is None:
        return None
    return int(_blas_threads_before or _blas.get())


def num_workers() -> int:
    """Threads a parallel section uses (1: everything runs on the caller's thread)."""
    _init()
    return _workers


def blas_splittable() -> bool:
    """True when BLAS calls may run in parallel slices (BLAS held to one thread meanwhile)."""
    _init()
    return _workers > 1 and _blas.set is not None


def parallel_for(fn, n: int, elements: int, blas: bool = False):
    """Run fn(i0, i1) over a split of range(n) into contiguous slices, one per worker.

    Returns the list of results in slice order. Runs fn(0, n) on the caller's thread when
    there is one worker, fewer than two items, less than MIN_PARALLEL_ELEMENTS of work, or
    when called from inside a parallel section. ``blas=True`` says fn calls BLAS: it is then
    split only if the BLAS thread count can be held to one meanwhile.
    """
    _init()
    w = min(_workers, n)
    if (w < 2 or elements < MIN_PARALLEL_ELEMENTS or getattr(_inside, "on", False)
            or (blas and _blas.set is None)):
        return [fn(0, n)]
    global _pool
    bounds = [n * i // w for i in range(w + 1)]

    def run(i):
        _inside.on = True
        try:
            return fn(bounds[i], bounds[i + 1])
        finally:
            _inside.on = False

    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, _workers - 1), thread_name_prefix="icsnn")
        if _blas.set is not None:
            _hold_blas()
        saved = _blas.get() if blas else None
        if blas:
            _blas.set(1)
        futures = [_pool.submit(run, i) for i in range(1, w)]
        try:
            first = run(0)
        finally:
            wait(futures)                        # never restore BLAS under a running slice
            if blas:
                _blas.set(saved)
        return [first] + [f.result() for f in futures]


_init()    # hold the BLAS now, before the first product (see the module docstring)
