"""How the benchmarks measure: wall time, other processes' load, peak memory, the machine."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
import tracemalloc

import numpy as np

from ..backend import backend_name
from ..fast.blas import openblas
from ..fast.cache import cache_sizes
from ..fast.threads import num_workers


def sync(xp):
    if xp is not np:
        xp.cuda.Stream.null.synchronize()      # sync point: wait for queued GPU work


def spread(ts) -> dict:
    """Seconds of repeated calls: median, min, max and all (``best`` is min, for old readers)."""
    ts = [float(t) for t in ts]
    if not ts:
        raise ValueError("no timed calls: spread needs at least one time")
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "best": min(ts),
            "all": ts}


def _seconds(fn, xp=np, clock=time.perf_counter) -> float:
    """Seconds of one call of ``fn``: the host clock on NumPy, CUDA events on CuPy (there the
    time is taken on the device, not on the host)."""
    if xp is np:
        t0 = clock()
        fn()
        return clock() - t0
    start, end = xp.cuda.Event(), xp.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()                          # sync point: read the events
    return xp.cuda.get_elapsed_time(start, end) / 1e3


def time_it(fn, repeats: int, xp=np, warmup: bool = True, clock=time.perf_counter) -> dict:
    """One warm-up call, then ``repeats`` timed calls in a row: ``spread`` of their seconds."""
    if warmup:
        fn()
        sync(xp)
    return spread([_seconds(fn, xp, clock) for _ in range(max(1, repeats))])


def time_alternating(calls, repeats: int, clock=time.perf_counter) -> dict:
    """Time several callables in turn, so that they share the machine's state and load.

    ``calls``: (name, fn, xp) in order. One warm-up call of each in that order, then
    ``repeats`` rounds of one timed call of each in that order (a, b, a, b, ... for two).
    Returns {name: spread of its seconds}; each call is timed as ``time_it`` would.
    """
    calls = list(calls)
    names = [c[0] for c in calls]
    if not calls or len(set(names)) != len(names):
        raise ValueError(f"time_alternating needs callables with distinct names, got {names}")
    for _, fn, xp in calls:
        fn()
        sync(xp)
    ts = {name: [] for name in names}
    for _ in range(max(1, repeats)):
        for name, fn, xp in calls:
            ts[name].append(_seconds(fn, xp, clock))
    return {name: spread(v) for name, v in ts.items()}


class Contention:
    """How many cores other processes kept busy while a section ran (Linux /proc/stat).

    (all CPU time spent on the machine - this process's CPU time) / wall time; 0 on a quiet
    machine, about 1 when another job holds a whole core. None where /proc is missing.
    """

    def __enter__(self):
        self.start = self._snap()
        return self

    def __exit__(self, *exc):
        end = self._snap()
        if self.start is None or end is None:
            self.cores = None
            return
        (busy0, own0, t0), (busy1, own1, t1) = self.start, end
        self.cores = max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9))

    @staticmethod
    def _snap():
        try:
            with open("/proc/stat") as f:
                v = [int(a) for a in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        busy = (sum(v) - v[3] - v[4]) / hz          # all but idle and iowait
        own = sum(os.times()[:2])
        return busy, own, time.perf_counter()


def peak_bytes(fn, xp) -> int:
    """Peak bytes allocated while ``fn`` runs: tracemalloc on NumPy (it sees NumPy's
    buffers), the memory pool's high-water on CuPy."""
    if xp is np:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            fn()
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    pool = xp.get_default_memory_pool()
    pool.free_all_blocks()
    base = pool.total_bytes()
    fn()
    sync(xp)
    return pool.total_bytes() - base     # the pool keeps what it handed out: about the peak


def tracemalloc_sees_numpy() -> bool:
    tracemalloc.start()
    try:
        a = np.empty(1 << 23, np.uint8)
        seen = tracemalloc.get_traced_memory()[0] >= a.nbytes
        del a
        return seen
    finally:
        tracemalloc.stop()


def blas_info() -> dict:
    """NumPy's BLAS: OpenBLAS kernel family, build string and thread count."""
    lib = openblas()
    env = os.environ.get("OPENBLAS_CORETYPE")
    threads = lib.get_threads() if lib is not None else None
    if threads is None:
        n = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        threads = int(n) if n and n.isdigit() else (os.cpu_count() or 1)
    return {"core": lib.core if lib else None, "config": lib.config if lib else None,
            "threads": int(threads),
            "setting": (f"OPENBLAS_CORETYPE={env}" if env else
                        "OpenBLAS's own choice of kernels (OPENBLAS_CORETYPE unset)")}


def load_avg() -> list | None:
    """The 1, 5 and 15 minute load averages, None where the OS has none."""
    try:
        return [float(v) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(xp) -> dict:
    """What the numbers depend on: the CPU (model, cores, data caches), the BLAS (kernels,
    threads), the fast engine's thread count, versions, and the load average before (the run
    adds the one after)."""
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
        cpu = fields.get("Model name", cpu).strip()
        cores = (f"{fields.get('CPU(s)', '?').strip()} CPUs, "
                 f"{fields.get('Thread(s) per core', '?').strip()} thread(s)/core")
    except (OSError, subprocess.SubprocessError):
        cores = f"{os.cpu_count()} CPUs"
    info = {"cpu": cpu, "cores": cores, "cpu_count": os.cpu_count(), "caches": cache_sizes(),
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas_info(),
            "engine_threads": num_workers(), "backend": backend_name(xp),
            "load_avg_before": load_avg()}
    try:
        import torch  # noqa: PLC0415 - optional, only for the comparison columns
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    if xp is not np:
        dev = xp.cuda.Device()
        name = xp.cuda.runtime.getDeviceProperties(dev.id)["name"]     # bytes (str in some CuPy)
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = xp.__version__
    return info
