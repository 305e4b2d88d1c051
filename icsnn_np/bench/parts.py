"""The four measurements of the benchmark (see the package docstring) and agreement over seeds."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..backend import get_xp, to_device, to_host
from ..convert import balance_thresholds, convert
from ..io.data import load_dataset
from ..fast.engine import DEFAULT_CHUNK, fast_snn, simulate_fast
from ..fast.layers import accelerate
from ..fast.threads import hold_blas
from ..layers import AvgPool2d, Conv2d
from ..models import build_model, vgg
from ..optim import SGD, cross_entropy
from ..io.preprocess import batched, channel_stats, normalize
from ..simulate import simulate
from .measure import (Contention, load_avg, machine_info, peak_bytes, time_alternating, time_it,
                      tracemalloc_sees_numpy)
from .report import check_targets
from .twins import import_torch, torch_model, torch_snn

# The benchmark's SNN network: vgg_cpu's layout at twice its widths (not one of the paper's).
VGG_BENCH = [64, 64, "A", 128, 128, "A", 256, 256, "A"]


def bench_model(name: str, seed: int = 0):
    """``vgg_bench`` (VGG_BENCH) or any network of ``models.build_model`` by name."""
    return vgg(VGG_BENCH, seed=seed) if name == "vgg_bench" else build_model(name, seed=seed)


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
    reference_repeats: int = 1         # the teaching path is slow: fewer timed calls
    torch: bool = True
    quick: bool = False

    @classmethod
    def quick_sizes(cls, **kw):
        return cls(batch=2, T=4, chunk=2, train_batch=8, Ts=(4, 8, 16), gemm_n=256, repeats=2,
                   quick=True, **kw)


def bench_data(cfg: BenchConfig, xp):
    """Normalised images from the bundled CIFAR-10 slice (random ones if it is missing)."""
    try:
        ds = load_dataset("cifar10-slice")
        mean, std = channel_stats(ds.x_train)
        x_cal = normalize(ds.x_train[:128], mean, std, xp)
        x = normalize(ds.x_test[:cfg.batch], mean, std, xp)
        xt = normalize(ds.x_train[:cfg.train_batch], mean, std, xp)
        return x_cal, x, xt, to_device(ds.y_train[:cfg.train_batch], xp), "cifar10-slice"
    except Exception:  # the slice is optional: random data still makes the network spike
        rng = np.random.default_rng(0)
        r = lambda m: to_device(rng.standard_normal((m, 3, 32, 32)).astype(np.float32), xp)  # noqa: E731
        return (r(128), r(cfg.batch), r(cfg.train_batch),
                to_device(rng.integers(0, 10, cfg.train_batch), xp), "random normal")


def balanced_snn(model, x_cal, xp):
    snn = convert(model)
    balance_thresholds(snn, model, batched(x_cal, 64), p=0.99)
    return snn


def conv_shapes(flat, chw):
    """(index in flat, conv, input (C, H, W), useful FLOPs per image) for every conv."""
    C, H, W = chw
    out = []
    for i, m in enumerate(flat):
        if isinstance(m, Conv2d):
            Ho, Wo = m.out_size(H, W)
            out.append((i, m, (C, H, W), 2 * m.out_channels * C * m.kernel_size ** 2 * Ho * Wo))
            C, H, W = m.out_channels, Ho, Wo
        elif isinstance(m, AvgPool2d):
            H, W = m.out_size(H, W)
    return out


# --------------------------------------------------------------------------- 1. SNN inference
def rates(n: float, key: str, t: dict) -> dict:
    """``{key}_rate`` (n / the median seconds) and ``{key}_rate_range`` [n / max, n / min]."""
    return {f"{key}_rate": n / t["median"], f"{key}_rate_range": [n / t["max"], n / t["min"]]}


def bench_snn(cfg, xp, x_cal, x, torch, res):
    snn = balanced_snn(bench_model(cfg.model).to(xp), x_cal, xp)
    run = lambda **kw: simulate_fast(snn, x, cfg.T, chunk=cfg.chunk, **kw)  # noqa: E731
    # im2col convs: the float32 rounding of a direct convolution, beside Winograd's
    calls = [("ours", run, xp), ("im2col", lambda: run(algo="im2col"), xp)]
    trun = None
    if torch is not None:
        device = "cuda" if xp is not np else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            res["notes"].append("torch has no CUDA here: the PyTorch SNN column is skipped")
        else:
            trun = torch_snn(torch, snn, device)
            xt = torch.as_tensor(to_host(x), device=device)
            tsync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
            calls.append(("torch", lambda: (trun(xt, cfg.T), tsync()), np))   # host clock
    # ours, im2col and PyTorch in turn, round after round: the same load for each
    t = time_alternating(calls, cfg.repeats)
    ours, exact = t["ours"], t["im2col"]
    out = to_host(run().output)
    counted = run(count=True)
    out_exact = to_host(run(algo="im2col").output)
    ref = time_it(lambda: simulate(snn, x, cfg.T), cfg.reference_repeats, xp)
    out_ref = to_host(simulate(snn, x, cfg.T).output)
    n = x.shape[0] * cfg.T
    r = {"model": cfg.model, "batch": int(x.shape[0]), "T": cfg.T, "chunk": cfg.chunk,
         "timing": "alternating" if len(calls) > 1 else "in a row",
         "order": [c[0] for c in calls], "repeats": cfg.repeats,
         "ours_s": ours, **rates(n, "ours", ours), "im2col_s": exact, **rates(n, "im2col", exact),
         "reference_s": ref, **rates(n, "reference", ref),
         "reference_agreement": float((out_ref.argmax(1) == out.argmax(1)).mean()),
         "firing_rate_per_layer": [s / (n * k) for s, k in zip(counted.spikes, counted.neurons)]}
    # direct coding: the convs before the first IF node run once, the others every step
    flops = sum(f * (1 if i < snn.first else cfg.T) * x.shape[0]
                for i, _, _, f in conv_shapes(snn.flat, x.shape[1:]))
    r["engine_conv_gflops"] = flops / ours["median"] / 1e9
    if trun is not None:
        theirs = t["torch"]
        tout = trun(xt, cfg.T).cpu().numpy()
        top2 = np.sort(tout, axis=1)[:, -2:]
        r.update(torch_s=theirs, **rates(n, "torch", theirs),
                 ratio=theirs["median"] / ours["median"],
                 agreement=float((tout.argmax(1) == out.argmax(1)).mean()),
                 max_abs_output_diff=float(np.abs(tout - out).max()),
                 im2col_ratio=theirs["median"] / exact["median"],
                 im2col_agreement=float((tout.argmax(1) == out_exact.argmax(1)).mean()),
                 im2col_max_abs_output_diff=float(np.abs(tout - out_exact).max()),
                 # timed apart from PyTorch (too slow to alternate): a rougher ratio
                 reference_ratio=theirs["median"] / ref["median"],
                 # how close the nearest call is: PyTorch's top-1 minus top-2 output
                 smallest_top2_margin=float((top2[:, 1] - top2[:, 0]).min()))
    res["snn"] = r
    return snn


# --------------------------------------------------------------------------- 2. GEMM
def bench_gemm(cfg, xp, snn, x, res):
    """Each fast conv on a chunk of spike input, against an (n, n) @ (n, n) product."""
    rng = np.random.default_rng(0)
    n = cfg.gemm_n
    a = to_device(rng.standard_normal((n, n), dtype=np.float32), xp)
    b = to_device(rng.standard_normal((n, n), dtype=np.float32), xp)
    c = xp.empty((n, n), dtype=np.float32)
    mm = time_it(lambda: xp.matmul(a, b, out=c), cfg.repeats, xp)   # the BLAS with all its threads
    plain = 2 * n ** 3 / mm["median"] / 1e9
    rows = cfg.chunk * x.shape[0]              # the engine feeds a chunk of steps at once
    fast = fast_snn(snn)
    layers, tot_f, tot_t, tot_w = [], 0, 0.0, 0.0
    for i, m, (C, H, W), f in conv_shapes(fast.flat, x.shape[1:]):
        if i < fast.first:
            continue                           # runs once per batch, not per step
        # spike input (~15 % firing) stored channels-last, as the IF node before hands it over
        spikes = rng.random((rows, H, W, C), dtype=np.float32) < 0.15
        inp = to_device(spikes.astype(np.float32), xp).transpose(0, 3, 1, 2)
        # into a reused output, as the engine does: a fresh 64 MB array per call would time
        # the kernel's page faults, not the convolution
        with hold_blas():
            out = m.forward(inp)
            m.algo = "im2col"                  # the GEMM the target is about
            t = time_it(lambda: m.forward(inp, out=out), cfg.repeats, xp)
            m.algo = "auto"                    # what the engine runs (Winograd where it applies)
            tw = time_it(lambda: m.forward(inp, out=out), cfg.repeats, xp) if m.uses_winograd() else t
        gf, gw = f * rows / t["median"] / 1e9, f * rows / tw["median"] / 1e9
        layers.append({"layer": f"Conv2d({m.in_channels}, {m.out_channels}, k={m.kernel_size}, "
                                f"s={m.stride}, p={m.padding})", "input": [rows, C, H, W],
                       "gflops": gf, "fraction_of_matmul": gf / plain, "s": t,
                       "winograd": bool(tw is not t), "engine_gflops": gw,
                       "engine_fraction_of_matmul": gw / plain, "engine_s": tw})
        tot_f += f * rows
        tot_t += t["median"]
        tot_w += tw["median"]
        inp = out = None                       # free the big arrays before the next layer
    conv = tot_f / tot_t / 1e9 if tot_t else float("nan")
    engine_layers = tot_f / tot_w / 1e9 if tot_w else float("nan")
    res["gemm"] = {"matmul_n": n, "matmul_s": mm, "matmul_gflops": plain, "conv_layers": layers,
                   "conv_gflops": conv, "conv_fraction_of_matmul": conv / plain,
                   "engine_layers_gflops": engine_layers,
                   "engine_layers_fraction_of_matmul": engine_layers / plain,
                   "engine_conv_gflops": res["snn"]["engine_conv_gflops"],
                   "engine_fraction_of_matmul": res["snn"]["engine_conv_gflops"] / plain,
                   "timing": "median of each layer's calls in a row; GFLOP/s from medians"}


# --------------------------------------------------------------------------- 3. training
def _train_step(net, opt, xt, yt, losses):
    net.train()
    net.zero_grad()
    loss, dlogits = cross_entropy(net.forward(xt), yt)
    net.backward(dlogits, input_grad=False)          # as torch: no grad for the data
    opt.step()
    losses.append(loss)


def bench_train(cfg, xp, xt, yt, torch, res):
    model = build_model(cfg.train_model, seed=0).to(xp)
    tm = torch_model(torch, model) if torch is not None and xp is np else None
    fast, losses = accelerate(model), []
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)

    def ostep():
        with hold_blas():                    # ours only: PyTorch keeps its threads between
            _train_step(fast, opt, xt, yt, losses)

    calls = [("ours", ostep, xp)]
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

        calls.append(("torch", tstep, np))
    elif torch is not None:
        res["notes"].append("the PyTorch training column runs on the numpy backend only")
    t = time_alternating(calls, cfg.repeats)         # ours, PyTorch, ours, PyTorch, ...
    ours = t["ours"]
    ref = time_it(lambda: _train_step(model, opt, xt, yt, []), cfg.reference_repeats, xp)
    n = xt.shape[0]
    r = {"model": cfg.train_model, "batch": int(n),
         "timing": "alternating" if len(calls) > 1 else "in a row",
         "order": [c[0] for c in calls], "repeats": cfg.repeats,
         "ours_s": ours, **rates(n, "ours", ours), "reference_s": ref, **rates(n, "reference", ref)}
    if tm is not None:
        theirs = t["torch"]
        r.update(torch_s=theirs, **rates(n, "torch", theirs),
                 ratio=theirs["median"] / ours["median"],
                 reference_ratio=theirs["median"] / ref["median"],    # timed apart: rougher
                 first_loss_ours=float(to_host(losses[0])), first_loss_torch=tlosses[0])
    res["train"] = r


# --------------------------------------------------------------------------- 4. T scaling
def bench_T(cfg, xp, snn, x, res):
    rows = []
    for T in cfg.Ts:
        # the engine is warm after the first T: longer runs get no warm-up and fewer repeats
        reps = cfg.repeats if T == cfg.Ts[0] else max(1, min(2, cfg.repeats))
        run = lambda: simulate_fast(snn, x, T, chunk=cfg.chunk)  # noqa: E731
        rows.append({"T": T, "s": time_it(run, reps, xp, warmup=T == cfg.Ts[0]),
                     "peak_bytes": peak_bytes(run, xp)})
    t0, m0 = rows[0]["s"]["best"], rows[0]["peak_bytes"]
    for r in rows:
        r["time_vs_linear"] = r["s"]["best"] / (t0 * r["T"] / cfg.Ts[0])
        r["memory_vs_first"] = r["peak_bytes"] / m0 if m0 else None    # 0: a pool that cannot say
    res["T_scaling"] = {"chunk": cfg.chunk, "rows": rows,
                        "memory_method": "tracemalloc (NumPy reports its buffers to it: "
                                         f"checked {tracemalloc_sees_numpy()})"
                        if xp is np else "CuPy memory-pool high-water"}


# --------------------------------------------------------------------------- agreement
def agreement_seeds(cfg: BenchConfig, seeds: int, log=print) -> dict:
    """How often two float32 simulations of one SNN disagree on a prediction: the fast
    engine (Winograd and im2col convs) against the step-by-step PyTorch twin, over ``seeds``
    weight seeds of the (untrained) benchmark network. Needs PyTorch."""
    torch = import_torch(1, [])
    if torch is None:
        raise RuntimeError("--agreement-seeds needs PyTorch (pip install torch)")
    x_cal, x, _, _, source = bench_data(cfg, np)
    rows = []
    for seed in range(seeds):
        snn = balanced_snn(bench_model(cfg.model, seed=seed), x_cal, np)
        ref = torch_snn(torch, snn, "cpu")(torch.as_tensor(x), cfg.T).numpy()
        top2 = np.sort(ref, axis=1)[:, -2:]
        row = {"seed": seed, "smallest_top2_margin": float((top2[:, 1] - top2[:, 0]).min())}
        for algo in ("auto", "im2col"):
            out = simulate_fast(snn, x, cfg.T, chunk=cfg.chunk, algo=algo).output
            row[algo] = int((out.argmax(1) != ref.argmax(1)).sum())
        rows.append(row)
        log(f"seed {seed}: images that disagree with PyTorch: Winograd {row['auto']}, "
            f"im2col {row['im2col']} of {len(x)}")
    return {"model": cfg.model, "images": int(len(x)), "data": source, "T": cfg.T, "rows": rows}


# --------------------------------------------------------------------------- all
def run(cfg: BenchConfig, only=("snn", "gemm", "train", "T"), log=print) -> dict:
    xp = get_xp(cfg.backend)
    res = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
           "machine": machine_info(xp), "notes": []}
    torch = import_torch(res["machine"]["blas"]["threads"], res["notes"]) if cfg.torch else None
    x_cal, x, xt, yt, res["data"] = bench_data(cfg, xp)
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
    res["machine"]["load_avg_after"] = load_avg()
    if any(v is not None and v > 0.25 for v in busy.values()):
        res["notes"].append("other processes used the CPU during the run (cores busy per part: "
                            + ", ".join(f"{k} {v:.2f}" for k, v in busy.items() if v is not None)
                            + "): the numbers are contended")
    return res
