"""Benchmarks: ``python -m icsnn_np.bench`` (``--quick`` for a smoke run, ``--backend cupy``).

Measures in one run, on the same network, weights and inputs:

1. SNN inference throughput (image*time-steps/s) of ``simulate`` (direct coding) on
   ``vgg_bench``, batch 64, T = 32, against the same IF simulation written step by step in
   PyTorch eager (when torch is installed), with the agreement of their predictions;
2. the effective GFLOP/s of the engine's convolutions (useful FLOPs only) against a plain
   large float32 matrix product (the BLAS limit): as im2col + GEMM (the GEMM efficiency the
   target is about) and as the engine runs them (Winograd F(4x4, 3x3) for 3x3 'same' convs,
   which does 4x fewer multiplies and so can beat the matmul's rate);
3. training throughput (images/s) of ``vgg_cpu`` (forward, cross-entropy, backward, SGD
   step; batch 128) against the same step in PyTorch;
4. time and peak memory of the engine for T = 32, 128, 512.

Timing: one warm-up call, then ``--repeats`` calls; best and median are reported (ratios use
the best). PyTorch gets as many threads as the BLAS under NumPy. On the GPU (``--backend
cupy``) the engine is timed with CUDA events.

OpenBLAS picks its kernels (its "core type") at load time, from the CPU or from the
environment variable ``OPENBLAS_CORETYPE``. Some machines pin it: the ones these numbers come
from set ``OPENBLAS_CORETYPE=Haswell`` (AVX2), which halves every NumPy matrix product on their
AVX-512 CPU, while PyTorch's own kernels use AVX-512 regardless. ``--blas-core NAME`` (e.g.
``SkylakeX``) sets the variable before NumPy loads, for this process only; the default keeps
the environment's choice. The kernels in use are recorded in the JSON.
"""
from __future__ import annotations

import os
import sys


def _blas_core_from_argv() -> str:
    """Apply ``--blas-core NAME`` before NumPy is imported; return a note saying what holds."""
    argv = sys.argv[1:]
    name = None
    for i, a in enumerate(argv):
        if a == "--blas-core" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--blas-core="):
            name = a.split("=", 1)[1]
    env = os.environ.get("OPENBLAS_CORETYPE")
    if name is None:
        return f"OPENBLAS_CORETYPE={env} (from the environment)" if env else \
            "OpenBLAS's own choice of kernels (OPENBLAS_CORETYPE unset)"
    if "numpy" in sys.modules:
        return (f"--blas-core {name} ignored: NumPy was already loaded "
                f"(OPENBLAS_CORETYPE={env or 'unset'})")
    os.environ["OPENBLAS_CORETYPE"] = name
    return f"OPENBLAS_CORETYPE={name} (set by --blas-core; the environment had {env or 'none'})"


BLAS_NOTE = _blas_core_from_argv()

import argparse  # noqa: E402  (NumPy must load after --blas-core is applied)
import ctypes  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from .backend import backend_name, get_xp, to_device, to_host  # noqa: E402
from .convert import balance_thresholds, convert  # noqa: E402
from .data import channel_stats, load_dataset, normalize  # noqa: E402
from .layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU  # noqa: E402
from .models import build_model  # noqa: E402
from .neurons import IFNode  # noqa: E402
from .simulate import DEFAULT_CHUNK, simulate  # noqa: E402
from .threads import blas_thread_count, blas_threads  # noqa: E402
from .train import SGD, cross_entropy  # noqa: E402


@dataclass
class BenchConfig:
    backend: str = "numpy"
    model: str = "vgg_bench"          # the SNN inference network
    batch: int = 64
    T: int = 32
    chunk: int = DEFAULT_CHUNK
    train_model: str = "vgg_cpu"
    train_batch: int = 128
    Ts: tuple = (32, 128, 512)         # the T-scaling sweep
    gemm_n: int = 4096                 # the plain matrix product is (n, n) @ (n, n)
    repeats: int = 5
    torch: bool = True
    quick: bool = False
    out: str = "results/bench.json"
    md: str | None = None              # default: --out with the suffix .md

    @classmethod
    def quick_sizes(cls, **kw):
        return cls(batch=2, T=4, chunk=2, train_batch=8, Ts=(4, 8, 16), gemm_n=256, repeats=2,
                   quick=True, **kw)


# --------------------------------------------------------------------------- machine
def _openblas():
    """The OpenBLAS library NumPy loaded (found in /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return None
    for p in paths:
        try:
            return ctypes.CDLL(p)
        except OSError:
            continue
    return None


def _blas_call(lib, what: str, restype):
    for name in (f"scipy_openblas_{what}64_", f"openblas_{what}64_", f"openblas_{what}"):
        fn = getattr(lib, name, None) if lib is not None else None
        if fn is not None:
            fn.restype = restype
            return fn()
    return None


def blas_info() -> dict:
    """NumPy's BLAS: OpenBLAS core (kernel family), config string and thread count."""
    lib = _openblas()
    core = _blas_call(lib, "get_corename", ctypes.c_char_p)
    config = _blas_call(lib, "get_config", ctypes.c_char_p)
    threads = blas_thread_count() or _blas_call(lib, "get_num_threads", ctypes.c_int)
    if threads is None:
        env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() else (os.cpu_count() or 1)
    return {"core": core.decode() if core else None, "config": config.decode() if config else None,
            "threads": int(threads), "setting": BLAS_NOTE}


def machine_info(xp) -> dict:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
        cpu = fields.get("Model name", cpu).strip()
        cores = f"{fields.get('CPU(s)', '?').strip()} CPUs, {fields.get('Thread(s) per core', '?').strip()} thread(s)/core"
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
        info["gpu"] = xp.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
        info["cupy"] = xp.__version__
    return info


# --------------------------------------------------------------------------- timing
def _sync(xp):
    if xp is not np:
        xp.cuda.Stream.null.synchronize()      # sync point: wait for queued GPU work


def time_it(fn, repeats: int, xp=np, warmup: bool = True) -> dict:
    """One warm-up call, then ``repeats`` timed calls: seconds (best, median, all).

    On CuPy the time is taken between CUDA events on the device, not on the host clock.
    """
    if warmup:
        fn()
        _sync(xp)
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


def _torch(threads: int, note: list):
    """Import torch (never at package import time) with ``threads`` threads, or None."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        note.append("torch is not installed: the PyTorch columns are skipped "
                    "(pip install torch to compare)")
        return None
    torch.set_num_threads(threads)
    return torch


# --------------------------------------------------------------------------- data
def _data(cfg: BenchConfig, xp):
    """Normalised images from the bundled CIFAR-10 slice (random ones if it is missing)."""
    n = max(cfg.batch, cfg.train_batch)
    try:
        ds = load_dataset("cifar10-slice")
        mean, std = channel_stats(ds.x_train)
        x_cal = normalize(ds.x_train[:128], mean, std, xp)
        x = normalize(ds.x_test[:cfg.batch], mean, std, xp)
        xt = normalize(ds.x_train[:cfg.train_batch], mean, std, xp)
        yt = to_device(ds.y_train[:cfg.train_batch], xp)
        return x_cal, x, xt, yt, "cifar10-slice"
    except Exception:  # the slice is optional: random data still makes the network spike
        rng = np.random.default_rng(0)
        r = lambda m: to_device(rng.standard_normal((m, 3, 32, 32)).astype(np.float32), xp)  # noqa: E731
        return r(128), r(cfg.batch), r(n)[:cfg.train_batch], \
            to_device(rng.integers(0, 10, cfg.train_batch), xp), "random normal"


def conv_shapes(snn, chw):
    """(index in snn.flat, conv, input (C, H, W), useful FLOPs per image) for every conv."""
    C, H, W = chw
    out = []
    for i, m in enumerate(snn.flat):
        if isinstance(m, Conv2d):
            Ho, Wo = m._out_hw(H, W)
            out.append((i, m, (C, H, W), 2 * m.out_channels * C * m.kernel_size ** 2 * Ho * Wo))
            C, H, W = m.out_channels, Ho, Wo
        elif isinstance(m, AvgPool2d):
            H, W = m._out_hw(H, W)
    return out


# --------------------------------------------------------------------------- 1. SNN inference
def torch_snn(torch, snn, device):
    """The same IF simulation in PyTorch eager, step by step the usual way.

    Every step runs the whole network on the (constant, direct-coded) image: conv / pool /
    linear as in the ANN, each ReLU an IF node: v = v + I; s = (v > V_th); v -= s * V_th;
    the next layer gets s * V_th. The output is the time average of the last linear layer.
    Plain feed-forward (VGG-style) networks only.
    """
    F = torch.nn.functional
    t = lambda a: torch.as_tensor(np.asarray(to_host(a)), device=device)  # noqa: E731
    ops = []
    for m in snn.flat:
        if isinstance(m, Conv2d):
            ops.append(("conv", t(m.params["weight"]), t(m.params["bias"]), m.stride, m.padding))
        elif isinstance(m, AvgPool2d):
            ops.append(("pool", m.kernel_size, m.stride))
        elif isinstance(m, Flatten):
            ops.append(("flatten",))
        elif isinstance(m, Linear):
            ops.append(("linear", t(m.params["weight"]), t(m.params["bias"])))
        elif isinstance(m, IFNode):
            ops.append(("if", t(np.asarray(to_host(m.v_th), np.float32)),
                        t(np.asarray(to_host(m.v0), np.float32))))
        else:
            raise ValueError(f"the PyTorch reference handles plain VGG-style networks, "
                             f"not {type(m).__name__}")

    def run(x, T):
        with torch.inference_mode():
            v = [None] * len(ops)
            acc = None
            for _ in range(T):
                h = x
                for i, op in enumerate(ops):
                    if op[0] == "conv":
                        h = F.conv2d(h, op[1], op[2], stride=op[3], padding=op[4])
                    elif op[0] == "pool":
                        h = F.avg_pool2d(h, op[1], op[2])
                    elif op[0] == "flatten":
                        h = h.flatten(1)
                    elif op[0] == "linear":
                        h = F.linear(h, op[1], op[2])
                    else:
                        th = op[1]
                        v[i] = (op[2] + h) if v[i] is None else v[i] + h
                        s = (v[i] > th).float()
                        v[i] -= s * th
                        h = s * th
                acc = h if acc is None else acc + h
            return acc / T
    return run


def bench_snn(cfg, xp, x_cal, x, torch, res):
    model = build_model(cfg.model, seed=0).to(xp)
    snn = convert(model)
    balance_thresholds(snn, model, [x_cal[i:i + 64] for i in range(0, x_cal.shape[0], 64)],
                       p=0.99, xp=xp)
    ours = time_it(lambda: simulate(snn, x, cfg.T, chunk=cfg.chunk), cfg.repeats, xp)
    out = to_host(simulate(snn, x, cfg.T, chunk=cfg.chunk).output)
    counted = simulate(snn, x, cfg.T, chunk=cfg.chunk, count=True)
    # the same engine with every conv as im2col + GEMM: float32 rounding as in a direct conv
    convs = [m for m in snn.flat if isinstance(m, Conv2d)]
    for m in convs:
        m.algo = "im2col"
    try:
        exact = time_it(lambda: simulate(snn, x, cfg.T, chunk=cfg.chunk), cfg.repeats, xp)
        out_exact = to_host(simulate(snn, x, cfg.T, chunk=cfg.chunk).output)
    finally:
        for m in convs:
            m.algo = "auto"
    r = {"model": cfg.model, "batch": int(x.shape[0]), "T": cfg.T, "chunk": cfg.chunk,
         "ours_s": ours, "ours_rate": x.shape[0] * cfg.T / ours["best"],
         "im2col_s": exact, "im2col_rate": x.shape[0] * cfg.T / exact["best"],
         "firing_rate_per_layer": [s / (x.shape[0] * cfg.T * n)
                                   for s, n in zip(counted.spikes, counted.neurons)]}
    # direct coding: the convs before the first IF node run once, the others every step
    flops = sum(f * (1 if i < snn.first else cfg.T) * x.shape[0]
                for i, _, _, f in conv_shapes(snn, x.shape[1:]))
    r["engine_conv_gflops"] = flops / ours["best"] / 1e9
    if torch is not None:
        device = "cuda" if xp is not np else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            res["notes"].append("torch has no CUDA here: the PyTorch SNN column is skipped")
        else:
            run = torch_snn(torch, snn, device)
            xt = torch.as_tensor(to_host(x), device=device)
            sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
            theirs = time_it(lambda: (run(xt, cfg.T), sync()), cfg.repeats)
            tout = run(xt, cfg.T).cpu().numpy()
            top2 = np.sort(tout, axis=1)[:, -2:]
            r.update(torch_s=theirs, torch_rate=x.shape[0] * cfg.T / theirs["best"],
                     ratio=theirs["best"] / ours["best"],
                     agreement=float((tout.argmax(1) == out.argmax(1)).mean()),
                     max_abs_output_diff=float(np.abs(tout - out).max()),
                     im2col_ratio=theirs["best"] / exact["best"],
                     im2col_agreement=float((tout.argmax(1) == out_exact.argmax(1)).mean()),
                     im2col_max_abs_output_diff=float(np.abs(tout - out_exact).max()),
                     # how close the nearest call is: PyTorch's top-1 minus top-2 output
                     smallest_top2_margin=float((top2[:, 1] - top2[:, 0]).min()))
    res["snn"] = r
    return snn


# --------------------------------------------------------------------------- 2. GEMM
def bench_gemm(cfg, xp, snn, x, res):
    """Each conv of the engine on a chunk of spike input, against an (n, n) @ (n, n) product."""
    rng = np.random.default_rng(0)
    n = cfg.gemm_n
    a = to_device(rng.standard_normal((n, n), dtype=np.float32), xp)
    b = to_device(rng.standard_normal((n, n), dtype=np.float32), xp)
    c = xp.empty((n, n), dtype=np.float32)
    with blas_threads():                   # the BLAS with every core it had at start
        mm = time_it(lambda: xp.matmul(a, b, out=c), cfg.repeats, xp)
    plain = 2 * n ** 3 / mm["best"] / 1e9
    rows = cfg.chunk * x.shape[0]              # the engine feeds a chunk of steps at once
    layers, tot_f, tot_t, tot_w = [], 0, 0.0, 0.0
    for i, m, (C, H, W), f in conv_shapes(snn, x.shape[1:]):
        if i < snn.first:
            continue                           # runs once per batch, not per step
        # spike input (~15 % firing) stored channels-last, as the IF node before hands it over
        spikes = rng.random((rows, H, W, C), dtype=np.float32) < 0.15
        inp = to_device(spikes.astype(np.float32), xp).transpose(0, 3, 1, 2)
        algo = m.algo
        # into a reused output, as the engine does: a fresh 64 MB array per call would time
        # the kernel's page faults, not the convolution
        out = m.forward(inp)
        try:
            m.algo = "im2col"                  # the GEMM the target is about
            t = time_it(lambda: m.forward(inp, out=out), cfg.repeats, xp)
            m.algo = "auto"                    # what the engine runs (Winograd where it applies)
            tw = time_it(lambda: m.forward(inp, out=out), cfg.repeats, xp) if m._winograd() else t
        finally:
            m.algo = algo
        layers.append({"layer": repr(m), "input": [rows, C, H, W],
                       "gflops": f * rows / t["best"] / 1e9, "s": t,
                       "winograd": bool(tw is not t), "engine_gflops": f * rows / tw["best"] / 1e9,
                       "engine_s": tw})
        tot_f += f * rows
        tot_t += t["best"]
        tot_w += tw["best"]
        inp = out = None                       # free the big arrays before the next layer
    conv = tot_f / tot_t / 1e9 if tot_t else float("nan")
    res["gemm"] = {"matmul_n": n, "matmul_s": mm, "matmul_gflops": plain, "conv_layers": layers,
                   "conv_gflops": conv, "conv_fraction_of_matmul": conv / plain,
                   "engine_layers_gflops": tot_f / tot_w / 1e9 if tot_w else float("nan"),
                   "engine_conv_gflops": res["snn"]["engine_conv_gflops"],
                   "engine_fraction_of_matmul": res["snn"]["engine_conv_gflops"] / plain}


# --------------------------------------------------------------------------- 3. training
def torch_model(torch, model):
    """Our feed-forward model rebuilt in torch.nn with the same weights."""
    nn = torch.nn
    layers = []
    for m in model.flat():
        if isinstance(m, Conv2d):
            c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
        elif isinstance(m, Linear):
            c = nn.Linear(m.in_features, m.out_features)
        elif isinstance(m, ReLU):
            c = nn.ReLU()
        elif isinstance(m, AvgPool2d):
            c = nn.AvgPool2d(m.kernel_size, m.stride)
        elif isinstance(m, Flatten):
            c = nn.Flatten()
        else:
            raise ValueError(f"no torch twin for {type(m).__name__}")
        if m.params:
            with torch.no_grad():
                c.weight.copy_(torch.as_tensor(to_host(m.params["weight"])))
                c.bias.copy_(torch.as_tensor(to_host(m.params["bias"])))
        layers.append(c)
    return nn.Sequential(*layers)


def bench_train(cfg, xp, xt, yt, torch, res):
    model = build_model(cfg.train_model, seed=0).to(xp)
    tm = torch_model(torch, model) if torch is not None and xp is np else None
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    losses = []

    def step():
        model.train()
        model.zero_grad()
        loss, dlogits = cross_entropy(model.forward(xt), yt)
        model.backward(dlogits, input_grad=False)          # as torch: no grad for the data
        opt.step()
        losses.append(loss)

    ours = time_it(step, cfg.repeats, xp)
    r = {"model": cfg.train_model, "batch": int(xt.shape[0]), "ours_s": ours,
         "ours_rate": xt.shape[0] / ours["best"]}
    if tm is not None:
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x_t, y_t = torch.as_tensor(to_host(xt)), torch.as_tensor(to_host(yt))
        tlosses = []

        def tstep():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tm(x_t), y_t)
            loss.backward()
            topt.step()
            tlosses.append(float(loss.detach()))

        theirs = time_it(tstep, cfg.repeats)
        r.update(torch_s=theirs, torch_rate=xt.shape[0] / theirs["best"],
                 ratio=theirs["best"] / ours["best"],
                 first_loss_ours=float(to_host(losses[0])), first_loss_torch=tlosses[0])
    elif torch is not None:
        res["notes"].append("the PyTorch training column runs on the numpy backend only")
    res["train"] = r


# --------------------------------------------------------------------------- 4. T scaling
def _peak_bytes(fn, xp) -> int:
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
    _sync(xp)
    return pool.total_bytes() - base     # the pool keeps what it handed out: about the peak


def _tracemalloc_sees_numpy() -> bool:
    tracemalloc.start()
    try:
        a = np.empty(1 << 23, np.uint8)
        seen = tracemalloc.get_traced_memory()[0] >= a.nbytes
        del a
        return seen
    finally:
        tracemalloc.stop()


def bench_T(cfg, xp, snn, x, res):
    rows = []
    for T in cfg.Ts:
        # the engine is warm after the first T: longer runs get no warm-up and fewer repeats
        reps = cfg.repeats if T == cfg.Ts[0] else max(1, min(2, cfg.repeats))
        t = time_it(lambda: simulate(snn, x, T, chunk=cfg.chunk), reps, xp,
                    warmup=T == cfg.Ts[0])
        mem = _peak_bytes(lambda: simulate(snn, x, T, chunk=cfg.chunk), xp)
        rows.append({"T": T, "s": t, "peak_bytes": mem})
    t0, m0 = rows[0]["s"]["best"], rows[0]["peak_bytes"]
    for r in rows:
        r["time_vs_linear"] = r["s"]["best"] / (t0 * r["T"] / cfg.Ts[0])
        r["memory_vs_first"] = r["peak_bytes"] / m0
    res["T_scaling"] = {"chunk": cfg.chunk, "rows": rows,
                        "memory_method": "tracemalloc (NumPy reports its buffers to it: "
                                         f"checked {_tracemalloc_sees_numpy()})"
                        if xp is np else "CuPy memory-pool high-water"}


# --------------------------------------------------------------------------- report
TARGETS = {  # name: (what, key in the results, threshold, higher is better)
    "snn_vs_torch": "SNN inference >= 1.3x PyTorch eager, identical predictions",
    "conv_vs_matmul": "conv GEMMs >= 70 % of plain matmul GFLOP/s",
    "train_vs_torch": "training >= 0.8x PyTorch images/s",
    "time_linear_in_T": "time(T_max) <= 1.2 x linear extrapolation from T_min",
    "memory_flat_in_T": "peak memory(T_max) <= 1.5 x peak memory(T_min)",
}


def check_targets(res) -> dict:
    out = {}
    s = res.get("snn", {})
    if "ratio" in s:
        out["snn_vs_torch"] = {"value": s["ratio"], "agreement": s["agreement"],
                               "met": s["ratio"] >= 1.3 and s["agreement"] == 1.0}
    g = res.get("gemm")
    if g:
        out["conv_vs_matmul"] = {"value": g["conv_fraction_of_matmul"],
                                 "met": g["conv_fraction_of_matmul"] >= 0.7}
    tr = res.get("train", {})
    if "ratio" in tr:
        out["train_vs_torch"] = {"value": tr["ratio"], "met": tr["ratio"] >= 0.8}
    ts = res.get("T_scaling")
    if ts:
        last = ts["rows"][-1]
        out["time_linear_in_T"] = {"value": last["time_vs_linear"], "met": last["time_vs_linear"] <= 1.2}
        out["memory_flat_in_T"] = {"value": last["memory_vs_first"], "met": last["memory_vs_first"] <= 1.5}
    for k, v in out.items():
        v["target"] = TARGETS[k]
    return out


def table(res) -> str:
    lines = []
    add = lines.append
    s, g, tr, ts = res.get("snn"), res.get("gemm"), res.get("train"), res.get("T_scaling")
    fmt = lambda v, f="{:.0f}": "-" if v is None else f.format(v)  # noqa: E731
    if s:
        add(f"SNN inference, {s['model']}, batch {s['batch']}, T={s['T']}, chunk {s['chunk']} "
            f"(image*steps/s)")
        add("| convolutions | engine | PyTorch eager | ratio | prediction agreement | max abs output diff |")
        add("|---|---:|---:|---:|---:|---:|")
        for name, k in (("default (Winograd convs)", ""), ("im2col convs", "im2col_")):
            rate = s["ours_rate"] if not k else s.get("im2col_rate")
            if rate is None:
                continue
            agree = s.get(k + "agreement")
            add(f"| {name} | {rate:.0f} | {fmt(s.get('torch_rate'))} | {fmt(s.get(k + 'ratio'), '{:.2f}x')} "
                f"| {fmt(agree if agree is None else 100 * agree, '{:.1f} %')} "
                f"| {fmt(s.get(k + 'max_abs_output_diff'), '{:.2e}')} |")
        if "smallest_top2_margin" in s:
            add(f"\nSmallest gap between PyTorch's top two outputs over the batch: "
                f"{s['smallest_top2_margin']:.2e}")
        add("")
    if g:
        add(f"Convolutions, useful FLOPs (2*O*C*9 per output) per second, vs a {g['matmul_n']}^2 "
            "float32 matmul; im2col + GEMM, and the engine's choice (Winograd F(4x4,3x3) "
            "does 4x fewer multiplies, so it can exceed the matmul)")
        add("| layer | input (N, C, H, W) | im2col + GEMM GFLOP/s | engine GFLOP/s (algo) |")
        add("|---|---:|---:|---:|")
        for layer in g["conv_layers"]:
            add(f"| {layer['layer']} | {'x'.join(map(str, layer['input']))} | {layer['gflops']:.0f} "
                f"| {layer.get('engine_gflops', layer['gflops']):.0f} "
                f"({'winograd' if layer.get('winograd') else 'im2col'}) |")
        add(f"| all convs | | {g['conv_gflops']:.0f} ({100 * g['conv_fraction_of_matmul']:.0f} % of matmul) "
            f"| {fmt(g.get('engine_layers_gflops'))} |")
        add(f"| whole engine (conv FLOPs / simulate time) | | | {g['engine_conv_gflops']:.0f} "
            f"({100 * g['engine_fraction_of_matmul']:.0f} % of matmul) |")
        add(f"| plain matmul | | {g['matmul_gflops']:.0f} | |")
        add("")
    if tr:
        add(f"Training step, {tr['model']}, batch {tr['batch']} (images/s)")
        add("| engine | PyTorch | ratio |")
        add("|---:|---:|---:|")
        add(f"| {tr['ours_rate']:.0f} | {fmt(tr.get('torch_rate'))} | {fmt(tr.get('ratio'), '{:.2f}x')} |")
        add("")
    if ts:
        add(f"Engine time and peak memory vs T (chunk {ts['chunk']})")
        add("| T | time (s) | time / linear | peak memory (MiB) | memory / first |")
        add("|---:|---:|---:|---:|---:|")
        for r in ts["rows"]:
            add(f"| {r['T']} | {r['s']['best']:.3f} | {r['time_vs_linear']:.2f} "
                f"| {r['peak_bytes'] / 2 ** 20:.1f} | {r['memory_vs_first']:.2f} |")
        add("")
    tg = res.get("targets", {})
    if tg:
        add("| target | measured | met |")
        add("|---|---:|:---:|")
        for v in tg.values():
            add(f"| {v['target']} | {v['value']:.2f} | {'yes' if v['met'] else 'no'} |")
        add("")
    for n in res.get("notes", []):
        add(f"Note: {n}")
    return "\n".join(lines)


def machine_md(m: dict) -> str:
    b = m["blas"]
    return "\n".join([
        f"- CPU: {m['cpu']} ({m['cores']}); load average before: "
        + ", ".join(f"{v:.2f}" for v in m["load_avg_before"]),
        f"- Python {m['python']}, NumPy {m['numpy']}, BLAS: {b['config']} "
        f"(kernels: {b['core']}, {b['threads']} threads; {b['setting']})",
        f"- PyTorch: {m['torch'] or 'not installed'} (same thread count)",
        "- load average after: " + ", ".join(f"{v:.2f}" for v in m.get("load_avg_after", [])),
    ] + ([f"- GPU: {m['gpu']}, CuPy {m['cupy']}"] if "gpu" in m else []))


# --------------------------------------------------------------------------- main
def run(cfg: BenchConfig, only=("snn", "gemm", "train", "T"), log=print) -> dict:
    xp = get_xp(cfg.backend)
    res = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
           "machine": machine_info(xp), "notes": []}
    threads = res["machine"]["blas"]["threads"]
    torch = _torch(threads, res["notes"]) if cfg.torch else None
    x_cal, x, xt, yt, res["data"] = _data(cfg, xp)
    t0 = time.perf_counter()
    res["other_processes_cores"] = busy = {}
    with Contention() as c:
        snn = bench_snn(cfg, xp, x_cal, x, torch, res)
    busy["snn"] = c.cores
    log(f"  SNN inference done ({time.perf_counter() - t0:.0f}s)")
    for part, fn in (("gemm", lambda: bench_gemm(cfg, xp, snn, x, res)),
                     ("train", lambda: bench_train(cfg, xp, xt, yt, torch, res)),
                     ("T", lambda: bench_T(cfg, xp, snn, x, res))):
        if part in only:
            with Contention() as c:
                fn()
            busy[part] = c.cores
            log(f"  {part} done ({time.perf_counter() - t0:.0f}s)")
    res["targets"] = check_targets(res)
    res["seconds"] = time.perf_counter() - t0
    res["machine"]["load_avg_after"] = list(os.getloadavg())
    if any(v is not None and v > 0.25 for v in busy.values()):
        res["notes"].append("other processes used the CPU during the run (cores busy per part: "
                            + ", ".join(f"{k} {v:.2f}" for k, v in busy.items() if v is not None)
                            + "): the numbers are contended")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m icsnn_np.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of a few seconds)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--out", default=BenchConfig.out, help="JSON results (default %(default)s)")
    p.add_argument("--md", default=None, help="markdown table (default: --out with .md)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up")
    p.add_argument("--chunk", type=int, default=None, help="time steps per engine chunk")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch columns")
    p.add_argument("--only", nargs="*", default=["snn", "gemm", "train", "T"],
                   choices=["snn", "gemm", "train", "T"], help="parts to run (snn always runs)")
    p.add_argument("--blas-core", default=None, metavar="NAME",
                   help="set OPENBLAS_CORETYPE (e.g. SkylakeX) for this run, before NumPy loads")
    a = p.parse_args(argv)
    cfg = (BenchConfig.quick_sizes if a.quick else BenchConfig)(backend=a.backend, out=a.out, md=a.md,
                                                                torch=a.torch)
    if a.repeats is not None:
        cfg.repeats = a.repeats
    if a.chunk is not None:
        cfg.chunk = a.chunk
    print(f"benchmarking on {a.backend} ({BLAS_NOTE})", flush=True)
    res = run(cfg, only=tuple(a.only), log=lambda s: print(s, flush=True))
    if a.blas_core and os.environ.get("OPENBLAS_CORETYPE") != a.blas_core:
        res["notes"].append(f"--blas-core {a.blas_core} was not applied: NumPy was loaded first "
                            f"(run `python -m icsnn_np.bench --blas-core {a.blas_core}`)")
    text = table(res)
    print(text)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float) + "\n")
    md = Path(cfg.md) if cfg.md else out.with_suffix(".md")
    cmd = "python -m icsnn_np.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    md.write_text(f"# Benchmark\n\nCommand: `{cmd.strip()}` ({res['seconds']:.0f} s)\n\n"
                  f"{machine_md(res['machine'])}\n\n{text}\n")
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
