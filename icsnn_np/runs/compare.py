"""IC-SNN beside the training-free methods of its family, on the same network, images and
steps: the experiment of ``python -m icsnn_np.compare`` and tutorial 8.

    res = run_methods(model, x_calib, x_test, y_test, ConversionConfig(), Ts=[4, 8, 16, 32])
    text = markdown(res, meta)        # loss by counted T, at equal total steps, the winners

Every method runs with each threshold search asked for. The pre-run methods (COS, SRP) run
``prerun`` steps before their T; they are also run at T = S - prerun for every total S of
``Ts``, so that the equal-total table compares like with like.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ..beyond.methods import METHODS
from ..beyond.quantised import quantised_ann
from ..beyond.thresholds import THRESHOLD_SEARCHES, Thresholds
from ..convert import convert
from ..io.preprocess import batched
from .evaluate import ConversionConfig, ann_accuracy, calibrate, convert_balanced, snn_correct
from .progress import tracking
from .tables import binomial_se, mcnemar, pack_correct, save_png, unpack_correct

# (label, variant, overrides of the config): the paper's variants at the project's default
# readings, V_th/2 (C-SNN half: where a QCFS-trained ANN's neurons start), our fixed point,
# and the family (beyond/methods.py).
ROWS = [
    ("SNN", "snn", {}),
    ("C-SNN half, v(0) = V_th/2 (QCFS's start)", "c-snn", {"comp": "half"}),
    ("I-SNN", "i-snn", {}),
    ("IC-SNN", "ic-snn", {}),
    ("IC-SNN fixed point (ours)", "ic-snn-fp", {}),
    ("SNN Calibration (light)", "snn-calib", {}),
    ("SNN Calibration (advanced)", "snn-calib-adv", {}),
    ("SNN Calibration, v(0) form (ablation, ours)", "snn-calib-v0", {}),
    ("COS (layer by layer as its code; shift 1 V_th, fires on >)", "cos-layer", {}),
    ("COS, whole network (ours)", "cos", {}),
    ("SRP (residual potential)", "srp", {}),
]


def prerun_steps(variant: str, rho: int, L: int) -> int:
    """The uncounted steps a variant runs before its T counted ones on a network of L IF
    layers: rho (COS, SRP), L rho (COS layer by layer), 0 for the others."""
    return METHODS[variant].prerun_steps(rho, L)


def row_Ts(variant: str, Ts, prerun: int, match_total: bool = True):
    """The counted T a row runs at: ``Ts``, and for a pre-run method (``prerun`` steps) also
    S - prerun for every total S in ``Ts`` (so it can be compared at equal total steps)."""
    out = set(Ts)
    if prerun and match_total:
        out |= {S - prerun for S in Ts if S - prerun >= 1}
    return sorted(out)


def run_methods(model, x_calib, x_test, y_test, base: ConversionConfig, Ts, thresholds=THRESHOLD_SEARCHES,
                rows=ROWS, mean=None, std=None, log=print, match_total=True, memo=None):
    """Measure every row with every threshold search at its T list; a JSON-ready dict.
    ``memo`` (a ``partial.Partial``) keeps each measurement as it is made and hands back
    those an interrupted run of the same command already made (``--resume``)."""
    calib = batched(x_calib[:base.n_calib], base.batch_size)
    t_start = time.perf_counter()
    ann = ann_accuracy(model, x_test, y_test)
    log(f"ANN accuracy {ann:.2f}% on {len(x_test)} images")
    results, jobs, quant = [], [], {}
    L = len(convert(model).nodes)
    for thr in thresholds:
        for label, variant, over in rows:
            official = base.calib_recipe == "official" and METHODS[variant].recipe is not None
            results.append(dict(label=label, variant=variant, thresholds=thr, T={}, **over,
                                **({"ran_with": "mse (SNN Calibration's recipe)"} if official else {})))
            for T in row_Ts(variant, Ts, prerun_steps(variant, base.prerun, L), match_total):
                jobs.append((len(results) - 1, T))
    work = sum(len(x_test) * (T + prerun_steps(results[i]["variant"], base.prerun, L))
               for i, T in jobs)
    with tracking(work, log, what="comparison"):
        for thr in thresholds:
            cfg = replace(base, threshold_search=thr).validate()
            snn, _ = convert_balanced(model, calib, cfg)
            ths = Thresholds(snn, calib)
            for i, T in sorted((j for j in jobs if results[j[0]]["thresholds"] == thr),
                               key=lambda j: (j[1], j[0])):
                r = results[i]
                key = f"{thr}|{r['label']}|{T}"
                if memo is not None and memo.get(key) is not None:      # an earlier sitting's
                    r["T"][str(T)] = memo.get(key)
                    log(f"{thr:8s} {r['label']:38s} T={T:3d} taken from {memo.path.name}")
                    continue
                c = replace(cfg, **{k: v for k, v in r.items() if k in ("comp", "reading")})
                t0 = time.perf_counter()
                run = calibrate(snn, r["variant"], T, calib, c, ths, mean, std)
                correct, rate = snn_correct(snn, x_test, y_test, T, c, mean, std, run)
                acc = 100.0 * int(correct.sum()) / len(x_test)
                r["T"][str(T)] = {"acc": round(acc, 2), "loss": round(ann - acc, 2),
                                  "firing_rate": round(rate, 5), **run.steps(T),
                                  "seconds": round(time.perf_counter() - t0, 1),
                                  "correct": pack_correct(correct)}      # for paired tests
                if memo is not None:
                    memo.put(key, r["T"][str(T)])
                log(f"[{time.strftime('%H:%M:%S')}] {thr:8s} {r['label']:38s} T={T:3d} "
                    f"(+{r['T'][str(T)]['prerun']}) acc {acc:6.2f}% loss {ann - acc:6.2f} "
                    f"rate {rate:.4f} ({time.perf_counter() - t0:.0f}s)")
            quant[thr] = {}                  # a reference, no SNN: the T-level ANN (rounding)
            for T in Ts:
                ths.use(thr, T)
                quant[thr][str(T)] = round(ann_accuracy(quantised_ann(snn, T), x_test, y_test), 2)
                log(f"{thr:8s} quantised ANN (reference)  T={T:3d} acc {quant[thr][str(T)]:6.2f}%")
    return {"ann_acc": round(ann, 2), "rows": results, "n_test": int(len(x_test)),
            "n_calib": int(min(base.n_calib, len(x_calib))), "T": list(Ts),
            "prerun": base.prerun, "quantised_ann": quant,
            "seconds": round(time.perf_counter() - t_start, 1)}


# --------------------------------------------------------------------------- outputs
def at_total(row: dict, S: int):
    """The row's measurement whose total steps (pre-run + T) is S, or None."""
    for m in row["T"].values():
        if m["steps"] == S:
            return m
    return None


def _row(res: dict, name: str) -> dict:
    """The row ``winners`` calls ``name`` (its label, ", MSE V_th" for the MSE search)."""
    return next(r for r in res["rows"]
                if r["label"] + ("" if r["thresholds"] == "quantile" else ", MSE V_th") == name)


def winners(res: dict) -> dict:
    """Per total S of ``res["T"]``: the rows by accuracy at S (best first), with losses."""
    out = {}
    for S in res["T"]:
        ranked = sorted(((at_total(r, S)["acc"], r) for r in res["rows"] if at_total(r, S)),
                        key=lambda t: -t[0])
        out[S] = [(r["label"] + ("" if r["thresholds"] == "quantile" else ", MSE V_th"), acc)
                  for acc, r in ranked]
    return out


def vth_text(settings: dict) -> str:
    """What the V_th column means for these settings (a QCFS ANN's `quantile` is its λ)."""
    if "qcfs" in str(settings.get("threshold_rule", "")).split(":")[0]:
        return "V_th: `quantile` = each layer's trained QCFS threshold λ (no quantile)."
    return (f"V_th: `quantile` = threshold balancing at p = {settings['p']}, `MSE` = SNN "
            f"Calibration's search per layer at each T.")


def markdown(res: dict, meta: dict) -> str:
    """Two tables (by counted T; at equal total steps) and the winner at each total."""
    n, ann = res["n_test"], res["ann_acc"]
    se = binomial_se(ann, n)
    Ts = sorted({int(t) for r in res["rows"] for t in r["T"]} & set(res["T"]))
    lines = [f"# {meta['title']}", "",
             f"ANN accuracy {ann:.2f}% on {meta['data']}. Loss = ANN_ACC - SNN_ACC in points. "
             f"Binomial standard error of one accuracy here: ±{se:.2f} points (two methods "
             f"on the same images differ by more than noise when the gap exceeds about "
             f"{2 * (2 ** 0.5) * se:.1f} points, 2 SE of an unpaired difference). "
             + vth_text(meta["settings"]) +
             f" COS and SRP first run {res['prerun']} uncounted pre-run steps per image (COS layer "
             f"by layer: {res['prerun']} per IF layer); each row's total is T + its pre-run. "
             f"The *quantised ANN* rows are no SNN: the ANN with every ReLU replaced by its T-level "
             f"rounding at the same V_th (QCFS's clip-floor-shift), what an SNN whose every neuron "
             f"received its input evenly would compute; per-layer, per-channel or per-image v(0) can beat it.",
             "", "## Loss by counted T (the papers' convention: pre-run steps not in T)", "",
             "| Method | V_th | pre-run | total steps | " + " | ".join(f"T{t}-L" for t in Ts) + " |",
             "|---|---|---|---|" + "---|" * len(Ts)]
    for r in res["rows"]:
        pre = max((m["prerun"] for m in r["T"].values()), default=0)
        cells = [f"{r['T'][str(t)]['loss']:.2f}" if str(t) in r["T"] else "" for t in Ts]
        lines.append(f"| {r['label']} | {r.get('ran_with', r['thresholds'])} | {pre} | {'T + %d' % pre if pre else 'T'} | "
                     + " | ".join(cells) + " |")
    for thr, accs in res.get("quantised_ann", {}).items():
        cells = [f"{ann - accs[str(t)]:.2f}" if str(t) in accs else "" for t in Ts]
        lines.append(f"| *Quantised ANN (reference, no SNN): T levels at these V_th, rounding* | {thr} "
                     f"| - | - | " + " | ".join(cells) + " |")
    lines += ["", "## Loss at equal total steps S = pre-run + T (counted honestly)", "",
              "| Method | V_th | " + " | ".join(f"S{t}-L" for t in res["T"]) + " |",
              "|---|---|" + "---|" * len(res["T"])]
    for r in res["rows"]:
        cells = []
        for S in res["T"]:
            m = at_total(r, S)
            cells.append("" if m is None else f"{m['loss']:.2f}"
                         + (f" (T={m['steps'] - m['prerun']})" if m["prerun"] else ""))
        lines.append(f"| {r['label']} | {r.get('ran_with', r['thresholds'])} | " + " | ".join(cells) + " |")
    lines += ["", "## Best at each total number of steps", ""]
    for S, ranked in winners(res).items():
        if not ranked:
            continue
        (best, a1), rest = ranked[0], ranked[1:]
        text = f"- S = {S}: **{best}**, loss {ann - a1:.2f} ± {binomial_se(a1, n):.2f}"
        if rest:
            second, a2 = rest[0]
            gap = a1 - a2
            m1, m2 = (at_total(_row(res, label), S) for label in (best, second))
            if "correct" in m1 and "correct" in m2:      # paired: the same images
                p = mcnemar(unpack_correct(m1["correct"], n), unpack_correct(m2["correct"], n))[2]
                text += (f"; ahead of {second} by {gap:.2f} points (McNemar's exact p = {p:.2g} "
                         f"on the same images: {'shown' if p < 0.05 else 'not told apart'})")
            else:
                noise = (binomial_se(a1, n) ** 2 + binomial_se(a2, n) ** 2) ** 0.5
                text += (f"; ahead of {second} by {gap:.2f} points ({gap / noise:.1f} SE of the "
                         f"difference: {'beyond' if gap > 2 * noise else 'within'} the noise)")
        qs = [ann - a[str(S)] for a in res.get("quantised_ann", {}).values() if str(S) in a]
        if qs:
            text += (f". The T-level ANN itself (each ReLU rounded to {S} levels of its V_th: an "
                     f"SNN without unevenness error, v(0) = V_th/2) loses {min(qs):.2f}")
        lines.append(text)
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in meta["settings"].items()), "",
              f"Command: `{meta['command']}`", "", f"Wall time: {res['seconds'] / 60:.1f} min."]
    if res.get("note"):
        lines += ["", f"Note: {res['note']}"]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path | None, title: str):
    """Accuracy vs total steps (pre-run + T) per method, binomial error bars, one panel per
    threshold search; the PNG's bytes, also written to ``path`` unless it is None."""
    import matplotlib  # noqa: PLC0415 - only when a figure is drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    searches = list(dict.fromkeys(r["thresholds"] for r in res["rows"]))
    fig, axes = plt.subplots(1, len(searches), figsize=(6.5 * len(searches), 4.5), squeeze=False,
                             sharey=True)
    for ax, thr in zip(axes[0], searches):
        ax.axhline(res["ann_acc"], color="k", ls="--", label=f"ANN ({res['ann_acc']:.1f}%)")
        for r, mk in zip([r for r in res["rows"] if r["thresholds"] == thr], "osD^v<>ph*"):
            ms = sorted(r["T"].values(), key=lambda m: m["steps"])
            acc = [m["acc"] for m in ms]
            ax.errorbar([m["steps"] for m in ms], acc, marker=mk, capsize=3, label=r["label"],
                        yerr=[binomial_se(a, res["n_test"]) for a in acc])
        ax.set_xscale("log", base=2)
        steps = sorted({m["steps"] for r in res["rows"] for m in r["T"].values()})
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.set_xlabel("total time steps (pre-run + T)")
        ax.set_title(f"{title}\nV_th: {'p-quantile' if thr == 'quantile' else 'MSE search'}",
                     fontsize=10)
        ax.grid(alpha=0.3)
        lo = min(m["acc"] for r in res["rows"] for m in r["T"].values())
        ax.set_ylim(max(lo - 2, res["ann_acc"] - 25), res["ann_acc"] + 2)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_png(fig, path)
