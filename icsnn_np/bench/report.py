"""The benchmark's targets and its Markdown tables."""
from __future__ import annotations


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
        if last["memory_vs_first"] is not None:          # None: the device's pool could not say
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
        add("| path | ours | PyTorch eager | ratio | prediction agreement | max abs output diff |")
        add("|---|---:|---:|---:|---:|---:|")
        for name, k in (("fast engine (Winograd convs)", ""), ("fast engine, im2col convs", "im2col_"),
                        ("reference: step by step, im2col + GEMM", "reference_")):
            rate = s["ours_rate"] if not k else s.get(k + "rate")
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
        add("| path | ours | PyTorch | ratio |")
        add("|---|---:|---:|---:|")
        add(f"| fast engine | {tr['ours_rate']:.0f} | {fmt(tr.get('torch_rate'))} | {fmt(tr.get('ratio'), '{:.2f}x')} |")
        add(f"| reference layers | {tr['reference_rate']:.0f} | {fmt(tr.get('torch_rate'))} "
            f"| {fmt(tr.get('reference_ratio'), '{:.2f}x')} |")
        add("")
    if ts:
        add(f"Engine time and peak memory vs T (chunk {ts['chunk']})")
        add("| T | time (s) | time / linear | peak memory (MiB) | memory / first |")
        add("|---:|---:|---:|---:|---:|")
        for r in ts["rows"]:
            add(f"| {r['T']} | {r['s']['best']:.3f} | {r['time_vs_linear']:.2f} "
                f"| {r['peak_bytes'] / 2 ** 20:.1f} | {fmt(r['memory_vs_first'], '{:.2f}')} |")
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
