"""The benchmark's targets and its Markdown tables."""
from __future__ import annotations


# issue 35's targets: SNN inference against PyTorch eager (with its predictions), the conv
# GEMMs against the plain matmul, training against PyTorch; ratios from medians of
# alternating calls (parts.py)
SNN_RATIO, SNN_AGREEMENT, CONV_FRACTION, TRAIN_RATIO = 1.6, 0.98, 0.7, 1.0
TIME_LINEAR, MEMORY_FLAT = 1.2, 1.5

TARGETS = {
    "snn_vs_torch": f"SNN inference >= {SNN_RATIO}x PyTorch eager (medians), "
                    f">= {100 * SNN_AGREEMENT:.0f} % prediction agreement",
    "conv_vs_matmul": f"conv GEMMs >= {100 * CONV_FRACTION:.0f} % of plain matmul GFLOP/s",
    "train_vs_torch": f"training >= {TRAIN_RATIO}x PyTorch images/s (medians)",
    "time_linear_in_T": f"time(T_max) <= {TIME_LINEAR} x linear extrapolation from T_min",
    "memory_flat_in_T": f"peak memory(T_max) <= {MEMORY_FLAT} x peak memory(T_min)",
}


def check_targets(res) -> dict:
    """{target name: value, met, target text} for each target the results can judge."""
    out = {}
    s = res.get("snn", {})
    if "ratio" in s:
        out["snn_vs_torch"] = {"value": s["ratio"], "agreement": s["agreement"],
                               "met": s["ratio"] >= SNN_RATIO and s["agreement"] >= SNN_AGREEMENT}
    g = res.get("gemm")
    if g:
        out["conv_vs_matmul"] = {"value": g["conv_fraction_of_matmul"],
                                 "met": g["conv_fraction_of_matmul"] >= CONV_FRACTION}
    tr = res.get("train", {})
    if "ratio" in tr:
        out["train_vs_torch"] = {"value": tr["ratio"], "met": tr["ratio"] >= TRAIN_RATIO}
    ts = res.get("T_scaling")
    if ts:
        last = ts["rows"][-1]
        out["time_linear_in_T"] = {"value": last["time_vs_linear"],
                                   "met": last["time_vs_linear"] <= TIME_LINEAR}
        if last["memory_vs_first"] is not None:          # None: the device's pool could not say
            out["memory_flat_in_T"] = {"value": last["memory_vs_first"],
                                       "met": last["memory_vs_first"] <= MEMORY_FLAT}
    for k, v in out.items():
        v["target"] = TARGETS[k]
    return out


def rate_cell(rate, span=None) -> str:
    """A rate and its range over the calls: ``943 (901-962)``; ``-`` for none."""
    if rate is None:
        return "-"
    return f"{rate:.0f}" + (f" ({span[0]:.0f}-{span[1]:.0f})" if span else "")


def _fmt(v, f="{:.0f}") -> str:
    return "-" if v is None else f.format(v)


def _pct(v) -> str:
    return _fmt(None if v is None else 100 * v, "{:.0f} %")


NAMES = {"ours": "fast engine", "im2col": "fast engine with im2col convs", "torch": "PyTorch"}


def timing(part: dict) -> str:
    """How a part's rows were timed, for the table's heading."""
    if part.get("timing") == "in a row":          # nothing to alternate with
        return f"{part.get('repeats', '?')} calls in a row after one warm-up"
    if part.get("timing") != "alternating":
        return "calls in a row; an older record: rates and ratios from the fastest call"
    return (f"{part.get('repeats', '?')} rounds of alternating calls "
            f"({', '.join(NAMES.get(o, o) for o in part.get('order', []))}) after one warm-up each; ratios of medians")


def _snn_md(s, add):
    add(f"SNN inference, {s['model']}, batch {s['batch']}, T={s['T']}, chunk {s['chunk']} "
        f"(image*steps/s, median (min-max); {timing(s)}; the reference timed on its own)")
    add("| path | ours | PyTorch eager | ratio | prediction agreement | max abs output diff |")
    add("|---|---:|---:|---:|---:|---:|")
    theirs = rate_cell(s.get("torch_rate"), s.get("torch_rate_range"))
    for name, rate, k in (("fast engine (Winograd convs)", "ours", ""),
                          ("fast engine, im2col convs", "im2col", "im2col_"),
                          ("reference: step by step, im2col + GEMM", "reference", "reference_")):
        if s.get(rate + "_rate") is None:
            continue
        agree = s.get(k + "agreement")
        add(f"| {name} | {rate_cell(s[rate + '_rate'], s.get(rate + '_rate_range'))} | {theirs} "
            f"| {_fmt(s.get(k + 'ratio'), '{:.2f}x')} "
            f"| {_fmt(agree if agree is None else 100 * agree, '{:.1f} %')} "
            f"| {_fmt(s.get(k + 'max_abs_output_diff'), '{:.2e}')} |")
    if "smallest_top2_margin" in s:
        add(f"\nSmallest gap between PyTorch's top two outputs over the batch: "
            f"{s['smallest_top2_margin']:.2e}")


def _gemm_md(g, add):
    add(f"Convolutions, useful FLOPs (2*O*C*9 per output) per second (medians), and the fraction "
        f"of a {g['matmul_n']}^2 float32 matmul's rate each reaches; im2col + GEMM, and the "
        "engine's choice (Winograd F(4x4,3x3) does 4x fewer multiplies, so it can exceed the "
        "matmul)")
    add("| layer | input (N, C, H, W) | im2col + GEMM GFLOP/s | im2col / matmul "
        "| engine GFLOP/s (algo) | engine / matmul |")
    add("|---|---:|---:|---:|---:|---:|")
    plain = g["matmul_gflops"]
    for layer in g["conv_layers"]:
        eng = layer.get("engine_gflops", layer["gflops"])
        add(f"| {layer['layer']} | {'x'.join(map(str, layer['input']))} | {layer['gflops']:.0f} "
            f"| {_pct(layer['gflops'] / plain)} "
            f"| {eng:.0f} ({'winograd' if layer.get('winograd') else 'im2col'}) "
            f"| {_pct(eng / plain)} |")
    eng_all = g.get("engine_layers_gflops")
    add(f"| all convs | | {g['conv_gflops']:.0f} | {_pct(g['conv_fraction_of_matmul'])} "
        f"| {_fmt(eng_all)} | {_pct(None if eng_all is None else eng_all / plain)} |")
    add(f"| whole engine (conv FLOPs / simulate time) | | | | {g['engine_conv_gflops']:.0f} "
        f"| {_pct(g['engine_fraction_of_matmul'])} |")
    add(f"| plain matmul | | {plain:.0f} | 100 % | | |")


def _train_md(tr, add):
    add(f"Training step, {tr['model']}, batch {tr['batch']} (images/s, median (min-max); "
        f"{timing(tr)}; the reference timed on its own)")
    add("| path | ours | PyTorch | ratio |")
    add("|---|---:|---:|---:|")
    theirs = rate_cell(tr.get("torch_rate"), tr.get("torch_rate_range"))
    add(f"| fast engine | {rate_cell(tr['ours_rate'], tr.get('ours_rate_range'))} | {theirs} "
        f"| {_fmt(tr.get('ratio'), '{:.2f}x')} |")
    add(f"| reference layers | {rate_cell(tr['reference_rate'], tr.get('reference_rate_range'))} "
        f"| {theirs} | {_fmt(tr.get('reference_ratio'), '{:.2f}x')} |")


def _T_md(ts, add):
    add(f"Engine time and peak memory vs T (chunk {ts['chunk']}; time: the fastest call)")
    add("| T | time (s) | time / linear | peak memory (MiB) | memory / first |")
    add("|---:|---:|---:|---:|---:|")
    for r in ts["rows"]:
        add(f"| {r['T']} | {r['s']['best']:.3f} | {r['time_vs_linear']:.2f} "
            f"| {r['peak_bytes'] / 2 ** 20:.1f} | {_fmt(r['memory_vs_first'], '{:.2f}')} |")


def table(res) -> str:
    """The Markdown tables of a run: each part that ran, the targets, the notes."""
    lines = []
    add = lines.append
    for key, part in (("snn", _snn_md), ("gemm", _gemm_md), ("train", _train_md),
                      ("T_scaling", _T_md)):
        if res.get(key):
            part(res[key], add)
            add("")
    tg = res.get("targets", {})
    if tg:
        add("| target | measured | met |")
        add("|---|---:|:---:|")
        for v in tg.values():
            extra = f" (agreement {100 * v['agreement']:.1f} %)" if "agreement" in v else ""
            add(f"| {v['target']} | {v['value']:.2f}{extra} | {'yes' if v['met'] else 'no'} |")
        add("")
    for n in res.get("notes", []):
        add(f"Note: {n}")
    return "\n".join(lines)


def _bytes(b) -> str:
    if b is None:
        return "?"
    return f"{b / 2 ** 20:.0f} MiB" if b >= 2 ** 20 and b % 2 ** 20 == 0 else f"{b / 2 ** 10:.0f} KiB"


def _loads(v) -> str:
    return "unknown" if not v else ", ".join(f"{x:.2f}" for x in v)


def machine_md(m: dict) -> str:
    """The machine record as a Markdown list (older records without caches or the engine's
    threads say "?")."""
    b, c = m["blas"], m.get("caches") or {}
    return "\n".join([
        f"- CPU: {m['cpu']} ({m['cores']}); data caches (cpu0): L1d {_bytes(c.get('L1d'))}, "
        f"L2 {_bytes(c.get('L2'))}, L3 {_bytes(c.get('L3'))}",
        f"- Python {m['python']}, NumPy {m['numpy']}, BLAS: {b['config']} "
        f"(kernels: {b['core']}, {b['threads']} threads; {b['setting']})",
        f"- fast engine: {m.get('engine_threads', '?')} threads; PyTorch: "
        f"{m['torch'] or 'not installed'} ({b['threads']} threads, as the BLAS)",
        f"- load average before: {_loads(m.get('load_avg_before'))}; after: "
        f"{_loads(m.get('load_avg_after'))}",
    ] + ([f"- GPU: {m['gpu']}, CuPy {m['cupy']}"] if "gpu" in m else []))


def agreement_md(res: dict, command: str, seconds: float) -> str:
    """The table of ``--agreement-seeds``: images whose class differs from PyTorch's."""
    n, rows = res["images"], res["rows"]
    lines = ["# Fast engine vs PyTorch step-by-step: disagreements over weight seeds", "",
             f"Benchmark network `{res['model']}`, {n} images ({res['data']}), T = {res['T']}, direct "
             "coding, thresholds p = 0.99 on 128 training images; weights: He initialisation with "
             "the seed below (untrained, so many images sit near a tie). Counted: images whose "
             "predicted class differs from PyTorch's.", "",
             "| weight seed | Winograd convs (default) | im2col convs | smallest top-2 gap (PyTorch) |",
             "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['auto']} / {n} | {r['im2col']} / {n} | {r['smallest_top2_margin']:.2e} |")
    tot_w, tot_i = sum(r["auto"] for r in rows), sum(r["im2col"] for r in rows)
    lines += [f"| all | {tot_w} / {n * len(rows)} | {tot_i} / {n * len(rows)} | |", "",
              f"Command: `{command}` ({seconds:.0f} s)", ""]
    return "\n".join(lines)
