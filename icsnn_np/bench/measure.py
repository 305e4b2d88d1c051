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


def sync(xp):
    if xp is not np:
        xp.cuda.Stream.null.synchronize()      # sync point: wait for queued GPU work


def time_it(fn, repeats: int, xp=np, warmup: bool = True) -> dict:
    """One warm-up call, then ``repeats`` timed calls: seconds (best, median, all).

    On CuPy the time is taken between CUDA events on the device, not on the host clock.
    """
    if warmup:
        fn()
        sync(xp)
    ts = []
    for _ in range(max(1, repeats)):
        if xp is np:
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        else:
            start, end = xp.cuda.Event(), xp.cuda.Event()
            start.record()
            fn()
            end.record()
            end.synchronize()                  # sync point: read the events
            ts.append(xp.cuda.get_elapsed_time(start, end) / 1e3)
    return {"best": min(ts), "median": statistics.median(ts), "all": ts}


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


def machine_info(xp) -> dict:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
        cpu = fields.get("Model name", cpu).strip()
        cores = (f"{fields.get('CPU(s)', '?').strip()} CPUs, "
                 f"{fields.get('Thread(s) per core', '?').strip()} thread(s)/core")
    except (OSError, subprocess.SubprocessError):
        cores = f"{os.cpu_count()} CPUs"
    info = {"cpu": cpu, "cores": cores, "python": platform.python_version(), "numpy": np.__version__,
            "blas": blas_info(), "backend": backend_name(xp), "load_avg_before": list(os.getloadavg())}
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
