"""The paper's accuracy-loss tables (Tables 2-5) and Fig. 5 for a trained model: the
experiment of ``python -m icsnn_np.reproduce``.

    res = run_rows(model, x_calib, x_test, y_test, ConversionConfig(), Ts, reading_Ts)

Every row is a variant with the readings it runs with (the paper's four first, then one row
per reading of Alg. 2 and of the compensation); ``sweep`` runs every combination of p,
threshold rule and ResNet block treatment, after ``check_sweep`` made sure no two of them
build the same network. Rows whose v(0) cannot differ (``tables.setting_key``) run once.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np

from ..backend import to_host
from ..beyond.quantised import quantised_ann
from ..beyond.thresholds import Thresholds
from ..io.preprocess import batched
from .evaluate import ConversionConfig, ann_accuracy, calibrate, calibration_passes, convert_balanced, snn_correct
from .progress import tracking
from .tables import pack_correct, setting_key

# (label, variant, overrides of the config). The first four are the paper's variants with
# the project defaults; the rest show what each reading of the paper does.
ROWS = [
    ("SNN", "snn", {}),
    ("I-SNN", "i-snn", {}),
    ("C-SNN", "c-snn", {}),
    ("IC-SNN", "ic-snn", {}),
    ("I-SNN Alg.1 (literal)", "i-snn-alg1", {}),
    ("I-SNN raw (paper literal)", "i-snn", {"reading": "raw"}),
    ("I-SNN remainder", "i-snn", {"reading": "remainder"}),
    ("I-SNN clip", "i-snn", {"reading": "clip"}),
    ("C-SNN literal V/2T (paper literal)", "c-snn", {"comp": "literal"}),
    ("C-SNN half V/2", "c-snn", {"comp": "half"}),
    ("IC-SNN raw + literal (paper literal)", "ic-snn", {"reading": "raw", "comp": "literal"}),
    ("IC-SNN raw + half", "ic-snn", {"reading": "raw", "comp": "half"}),
    ("IC-SNN remainder + literal", "ic-snn", {"reading": "remainder", "comp": "literal"}),
    ("IC-SNN remainder + half", "ic-snn", {"reading": "remainder", "comp": "half"}),
    ("IC-SNN clip + half", "ic-snn", {"reading": "clip", "comp": "half"}),
    ("IC-SNN default readings, channel v(0) (ours)", "ic-snn", {"granularity": "channel"}),
    ("IC-SNN fixed point (ours)", "ic-snn-fp", {}),
    # beyond the paper, its training-free family (methods.py; icsnn_np.compare tabulates them)
    ("SNN Calibration (light; currents)", "snn-calib", {}),
    ("COS (layer by layer; +L rho pre-run steps)", "cos-layer", {}),
    ("SRP (residual potential; +pre-run steps)", "srp", {}),
]
MAIN_ROWS = 4


def _key(variant: str, c: ConversionConfig) -> tuple:
    return setting_key(variant, reading=c.reading, granularity=c.granularity, comp=c.comp)


def run_rows(model, x_calib, x_test, y_test, cfg: ConversionConfig, Ts, reading_Ts, rows=ROWS,
             mean=None, std=None, log=print, setting: str = "", memo=None):
    """Evaluate every row at its T list; returns the results dict (accuracy %, loss points).
    ``memo`` (a ``partial.Partial``) keeps each measurement as it is made and hands back
    those an interrupted run of the same command already made."""
    calib = batched(x_calib[:cfg.n_calib], cfg.batch_size)
    t_start = time.perf_counter()
    ann = ann_accuracy(model, x_test, y_test)
    snn, _ = convert_balanced(model, calib, cfg)
    thresholds = Thresholds(snn, calib)
    log(f"ANN accuracy {ann:.2f}% on {len(x_test)} images {setting}")
    # the paper's four rows run at every T (also when --rows picks a few), the others at reading_Ts
    jobs = [(i, T) for i in range(len(rows)) for T in (Ts if rows[i] in ROWS[:MAIN_ROWS] else reading_Ts)]
    total_steps = sum(T for _, T in {(_key(rows[i][1], replace(cfg, **rows[i][2])), T) for i, T in jobs})
    done_steps, done, earlier = 0, {}, 0         # (setting, T) -> the row that measured it
    results = [dict(label=r[0], variant=r[1], setting=setting, p=cfg.p,
                    thresholds="mse" if cfg.threshold_search == "mse" else
                    "channel" if cfg.channelwise else "layer", block=cfg.block,
                    **{k: getattr(replace(cfg, **r[2]), k) for k in ("reading", "comp", "granularity")},
                    T={}) for r in rows]
    unique = {(_key(rows[i][1], replace(cfg, **rows[i][2])), T): (i, T) for i, T in jobs}.values()
    n_cal = min(cfg.n_calib, len(x_calib))
    work = sum(T * (len(x_test) + n_cal * calibration_passes(rows[i][1], model)) for i, T in unique)
    with tracking(work, log, what="reproduction" + (f" ({setting})" if setting else "")) as tracker:
        for i, T in jobs:
            label, variant, over = rows[i]
            c = replace(cfg, **over)
            key = (_key(variant, c), T)
            if key in done:                          # same v(0) setting: same numbers
                results[i]["T"][str(T)] = dict(results[done[key]]["T"][str(T)], same_as=rows[done[key]][0])
                continue
            done[key] = i
            memo_key = f"{setting}|{label}|{T}"
            if memo is not None and memo.get(memo_key) is not None:    # measured in a past sitting
                results[i]["T"][str(T)] = memo.get(memo_key)
                earlier += 1
                total_steps -= T
                tracker.total = max(1.0, tracker.total - T * (len(x_test) + n_cal * calibration_passes(variant, model)))
                log(f"{label:45s} T={T:4d} taken from {memo.path.name}")
                continue
            t0 = time.perf_counter()
            run = calibrate(snn, variant, T, calib, c, thresholds, mean, std)
            correct, rate = snn_correct(snn, x_test, y_test, T, c, mean, std, run)
            acc = 100.0 * int(correct.sum()) / len(x_test)
            results[i]["T"][str(T)] = {"acc": round(acc, 2), "loss": round(ann - acc, 2),
                                       "firing_rate": round(rate, 5), **run.steps(T),
                                       "correct": pack_correct(correct)}    # for paired tests
            if memo is not None:
                memo.put(memo_key, results[i]["T"][str(T)])
            done_steps += T
            eta = (time.perf_counter() - t_start) / done_steps * (total_steps - done_steps)
            log(f"[{time.strftime('%H:%M:%S')}] {label:45s} T={T:4d} acc {acc:6.2f}% "
                f"loss {ann - acc:6.2f}  rate {rate:.4f}  ({time.perf_counter() - t0:.0f}s, ETA {eta / 60:.0f} min)")
    quant = {}                       # a reference, no SNN: the T-level ANN (rounding alone)
    for T in Ts:
        thresholds.use(cfg.threshold_search, T)
        quant[str(T)] = round(ann_accuracy(quantised_ann(snn, T), x_test, y_test), 2)
    log(f"T-level ANN (reference) {setting}: " + ", ".join(f"T={t} {a:.2f}%" for t, a in quant.items()))
    return {"ann_acc": round(ann, 2), "rows": results, "n_test": int(len(x_test)),
            "n_calib": int(min(cfg.n_calib, len(x_calib))),
            "seconds": round(time.perf_counter() - t_start, 1),   # this sitting's time only
            "earlier_measurements": earlier, "quantised_ann": {setting: quant}}


def sweep_configs(base: ConversionConfig, ps, thresholds, blocks):
    """[(thresholds, p, block, config)] for every combination a sweep runs."""
    return [(thr, p, block, replace(base, p=p, channelwise=thr == "channel", block=block,
                                    threshold_search="mse" if thr == "mse" else "quantile").validate())
            for thr, p, block in itertools.product(thresholds, ps, blocks)]


def rule_name(thr: str) -> str:
    return "MSE" if thr == "mse" else f"{thr}-wise"


def check_sweep(model, x_calib, base: ConversionConfig, ps, thresholds, blocks, Ts=()):
    """Before any measurement: every p of the sweep balances thresholds (a p whose quantile
    is 0 in some layer is refused, naming the p that works), and no two settings build the
    same networks (the same thresholds at every T of ``Ts`` and the same block treatment):
    the sweep would measure one network twice and could name either as the best. Costs one
    ANN pass over the calibration images per setting (and the MSE search per T)."""
    if len(blocks) > 1 and not any(type(m).__name__ == "BasicBlock" for _, m in model.named_modules()):
        raise ValueError(f"--block {' '.join(blocks)}: this network has no residual blocks, so "
                         f"every block treatment builds the same SNN; keep one")
    if len(ps) > 1 and any(type(m).__name__ == "QCFS" for _, m in model.named_modules()):
        raise ValueError("a QCFS-trained ANN converts with its trained λ as V_th: p is unused, so a "
                         "sweep of --p would measure one network; give one --p (or none)")
    calib = batched(x_calib[:base.n_calib], base.batch_size)
    seen = {}
    for thr, p, block, cfg in sweep_configs(base, ps, thresholds, blocks):
        try:
            snn, ths = convert_balanced(model, calib, cfg)
        except ValueError as e:
            raise ValueError(f"--p {p} ({rule_name(thr)} thresholds): {e}") from None
        per_T = [ths] if thr != "mse" else [Thresholds(snn, calib).use("mse", T) for T in Ts]
        key = (thr, block, tuple(np.asarray(to_host(t)).tobytes() for th in per_T for t in th))
        if key in seen:
            raise ValueError(f"--p {seen[key]} and --p {p} give the same {rule_name(thr)} thresholds on "
                             f"these {min(base.n_calib, len(x_calib))} calibration images"
                             + (" at every T" if thr == "mse" else "") + ": the sweep would "
                             f"measure one network twice; keep one of them")
        seen[key] = p


def sweep(model, x_calib, x_test, y_test, base: ConversionConfig, ps, thresholds, blocks, Ts,
          reading_Ts, rows, mean, std, log, memo=None):
    """run_rows for every (thresholds, p, block) combination; rows labelled by setting."""
    combos = sweep_configs(base, ps, thresholds, blocks)
    merged = None
    for thr, p, block, cfg in combos:
        thr_label = "MSE V_th" if thr == "mse" else f"{thr}-wise V_th"
        parts = ([f"p={p}"] if len(ps) > 1 else []) + ([thr_label] if len(thresholds) > 1 else []) \
            + ([f"block {block}"] if len(blocks) > 1 else [])
        res = run_rows(model, x_calib, x_test, y_test, cfg, Ts, reading_Ts, rows, mean, std, log,
                       setting=", ".join(parts), memo=memo)
        if merged is None:
            merged = res
        else:
            merged["rows"] += res["rows"]
            merged["quantised_ann"].update(res["quantised_ann"])
            merged["seconds"] = round(merged["seconds"] + res["seconds"], 1)
            merged["earlier_measurements"] += res["earlier_measurements"]
    if len(combos) > 1:
        ic = [r for r in merged["rows"] if r["label"] == "IC-SNN" and r["T"]]
        if ic:
            best = min(ic, key=lambda r: sum(v["loss"] for v in r["T"].values()))
            merged["best_ic_snn"] = {"setting": best["setting"],
                                     "loss": {t: v["loss"] for t, v in best["T"].items()}}
    return merged
