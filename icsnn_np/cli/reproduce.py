"""Reproduce the paper's accuracy-loss tables (Tables 2-5) and Fig. 5 for a trained model.

    python -m icsnn_np.reproduce --checkpoint runs/vgg_cpu_best.npz --data-dir ../shared/data \
        --n-test 2000 --out results/vgg_cpu_cifar10

writes ``<out>.md`` (Markdown table in the paper's format, loss = ANN - SNN in points, with
every reading of Alg. 2 and of the compensation as its own row), ``<out>.json`` and
``<out>.png`` (accuracy vs T, like Fig. 5). The default ``--out`` is
``runs/<checkpoint>_<dataset>``, a folder git ignores; an existing table (a committed one in
``results/``) is replaced only when named and with ``--force``. The four main rows run at
every T; the rows that compare readings run at ``--reading-T`` (the low-latency end, where
readings matter).

Several values of ``--p``, ``--thresholds`` or ``--block`` run every combination (a sweep:
rows are labelled by setting, and the lowest summed IC-SNN loss is named). ``--validation N``
measures on N held-out *training* images instead of the test set, for choosing p or a
reading without tuning on the reported numbers (protocol.py). Progress lines with
timestamps and an ETA go to stderr and ``--log``. Every measurement is kept in
``<out>.partial.json`` as it is made, so a run of hours spans sittings: after Ctrl-C or a
kill, the same command with ``--resume`` measures only the rest (partial.py). While it runs
the output stem is held by ``<out>.lock`` (one run per output), and the three files are
written together at the end through temporary names.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..backend import get_xp, to_host
from ..beyond.methods import TABLE
from ..beyond.prerun import PRERUN_STEPS
from ..beyond.quantised import quantised_ann
from ..beyond.thresholds import Thresholds
from ..io.checkpoint import check_fits_data, load_checkpoint, resolve_checkpoint
from ..io.data import DATASETS, load_dataset
from ..io.preprocess import batched, normalize
from ..runs.engine import DEFAULT_ENGINE, ENGINES
from ..runs.interrupt import kept_on_interrupt
from ..runs.evaluate import (ConversionConfig, ann_accuracy, calibrate, calibration_passes,
                             convert_balanced, preflight, quantile_for, snn_correct, threshold_rule)
from ..runs.partial import Partial, file_sha256
from ..runs.progress import tracking
from ..runs.protocol import SUBSETS, calibration_split, test_indices
from ..runs.tables import markdown, pack_correct, plot
from ..variants import setting_key
from . import common as cli

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
    return setting_key(variant, TABLE, reading=c.reading, granularity=c.granularity, comp=c.comp)


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
    work = sum(T * (len(x_test) + n_cal * calibration_passes(rows[i][1])) for i, T in unique)
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
                tracker.total = max(1.0, tracker.total - T * (len(x_test) + n_cal * calibration_passes(variant)))
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


def check_sweep(model, x_calib, base: ConversionConfig, ps, thresholds, blocks):
    """Before any measurement: every p of the sweep balances thresholds (a p whose quantile
    is 0 in some layer is refused, naming the p that works), and no two values of p give
    the same thresholds (the sweep would then measure one network twice and could name
    either as the best). Costs one ANN pass over the calibration images per setting."""
    calib = batched(x_calib[:base.n_calib], base.batch_size)
    seen = {}
    for thr, p, block, cfg in sweep_configs(base, ps, thresholds, blocks):
        if thr == "mse":
            continue
        try:
            _, ths = convert_balanced(model, calib, cfg)
        except ValueError as e:
            raise ValueError(f"--p {p} ({thr}-wise thresholds): {e}") from None
        key = (thr, block, tuple(np.asarray(to_host(t)).tobytes() for t in ths))
        if key in seen and len(ps) > 1:
            raise ValueError(f"--p {seen[key]} and --p {p} give the same {thr}-wise thresholds on "
                             f"these {min(base.n_calib, len(x_calib))} calibration images: the "
                             f"sweep would measure one network twice; keep one of them")
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


def _row_index(text):
    try:
        i = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row index, got {text!r}") from None
    if not 0 <= i < len(ROWS):
        raise argparse.ArgumentTypeError(f"--rows takes indices 0..{len(ROWS) - 1}, got {i}")
    return i


def parse_args(argv):
    p = cli.ArgumentParser(prog="python -m icsnn_np.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, or a bundled model's name")
    p.add_argument("--dataset", default="cifar10", type=cli.choice(DATASETS, "dataset"))
    p.add_argument("--data-dir", default=None, help="folder with the CIFAR files (default $ICSNN_DATA)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--n-test", type=cli.count("--n-test"), default=2000)
    p.add_argument("--test-subset", default="first", choices=SUBSETS,
                   help="the first --n-test test images, or a seeded random sample of them")
    p.add_argument("--validation", type=cli.count("--validation"), default=None, metavar="N",
                   help="measure on N held-out training images instead of the test set")
    p.add_argument("--n-calib", type=cli.count("--n-calib"), default=256)
    p.add_argument("--T", type=cli.steps(), nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--reading-T", type=cli.steps(), nargs="+", default=[8, 16, 32])
    p.add_argument("--rows", type=_row_index, nargs="+", default=None,
                   help=f"row indices to run (default all {len(ROWS)})")
    p.add_argument("--p", type=cli.quantile(), nargs="+", default=None,
                   help="threshold quantile(s); default: the p stored with the checkpoint, else 0.99")
    p.add_argument("--thresholds", nargs="+", default=["layer"], choices=["layer", "channel", "mse"],
                   help="layer / channel: p-quantile balancing; mse: SNN Calibration's search for "
                        "the V_th of least squared error at each T (layer-wise, methods.py)")
    p.add_argument("--prerun", type=cli.count("--prerun", minimum=0), default=PRERUN_STEPS,
                   help="pre-run steps of the COS and SRP rows, run before their T (reported)")
    p.add_argument("--block", nargs="+", default=["node"], choices=["node", "paper"],
                   help="ResNets: own V_th and v(0) per IF node, and/or the paper's one V_th per "
                        "block with v(0) on its first node")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--seed", type=cli.count("--seed", minimum=0), default=0)
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help="fast (default) or reference (the step-by-step teaching simulation)")
    p.add_argument("--chunk", type=cli.count("--chunk"), default=None,
                   help="fast engine: time steps per layer pass")
    p.add_argument("--batch-size", type=cli.count("--batch-size"), default=250)
    p.add_argument("--comp", default=ConversionConfig.comp, choices=["literal", "half"],
                   help="compensation of the main C-SNN and IC-SNN rows")
    p.add_argument("--reading", default=ConversionConfig.reading, choices=["raw", "remainder", "clip"],
                   help="Alg. 2 reading of the main I-SNN and IC-SNN rows")
    p.add_argument("--out", default=None,
                   help="output path stem (default runs/<checkpoint>_<dataset>; runs/ is not tracked)")
    p.add_argument("--force", action="store_true", help="replace <out>.json/.md/.png if they exist")
    p.add_argument("--log", default=None, help="also append progress to this file")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same command from <out>.partial.json "
                        "(kept after every measurement)")
    a = p.parse_args(argv)
    a.out = a.out or (f"runs/{Path(a.checkpoint).stem}_{a.dataset}"
                      + ("_validation" if a.validation else ""))
    partial = cli.with_ext(a.out, ".partial.json")
    cli.check_outputs(a.out, a.log, exts=(".partial.json",), force=True)
    cli.check_outputs(a.out, exts=(".json", ".md", ".png"),
                      force=a.force or (a.resume and partial.is_file()),
                      hint=" (or --resume, if an interrupted run left " f"{partial.name})")
    return a


def fingerprint(a) -> dict:
    """What decides the numbers (not where they are written or logged), the checkpoint by
    its content: a resumed run must match it (partial.py)."""
    return {k: v for k, v in vars(a).items()
            if k not in ("out", "log", "resume", "data_dir", "download", "checkpoint", "force")}


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv)


def _main(argv):
    a = parse_args(argv)
    path = resolve_checkpoint(a.checkpoint)
    base = ConversionConfig(T=tuple(a.T), p=(a.p or [0.99])[0], coding=a.coding, n_calib=a.n_calib,
                            seed=a.seed, engine=a.engine, chunk=a.chunk, batch_size=a.batch_size,
                            comp=a.comp, reading=a.reading, prerun=a.prerun).validate()
    a.checkpoint_sha256 = file_sha256(path)
    with cli.progress_log(a.log) as log, cli.claim(a.out, log):
        memo = Partial(cli.with_ext(a.out, ".partial.json"), fingerprint(a), resume=a.resume,
                       n_images=a.validation or a.n_test, labels={r[0] for r in ROWS})

        def kept():
            return (f"no table was written; {memo.kept()}"
                    + (f"; the progress so far is in {a.log}" if a.log else ""))
        with kept_on_interrupt(kept):
            if len(memo):
                log(f"resuming: {len(memo)} measurements from {memo.path}")
            rc = _reproduce(a, argv, path, base, log, memo)
        memo.finish()
    return rc


def _reproduce(a, argv, path, base, log, memo=None):
    xp = get_xp(a.backend)
    model, header = load_checkpoint(path)
    model.to(xp)
    ds = load_dataset(a.dataset, a.data_dir, download=a.download)
    mean, std = check_fits_data(header, ds.num_classes, a.dataset, str(path))
    ps = a.p or [quantile_for(header)]
    base.p = ps[0]
    cal, val = calibration_split(len(ds.x_train), a.n_calib, a.seed, a.validation or 0)
    x_calib = normalize(ds.x_train[cal], mean, std, xp)
    if a.validation:
        x_eval, y_eval = normalize(ds.x_train[val], mean, std, xp), ds.y_train[val]
        data = f"{a.validation} held-out {a.dataset} training images (not used for calibration)"
    else:
        idx = test_indices(len(ds.x_test), a.n_test, a.test_subset, a.seed)
        x_eval, y_eval = normalize(ds.x_test[idx], mean, std, xp), ds.y_test[idx]
        data = (f"the first {a.n_test}" if a.test_subset == "first" else
                f"{a.n_test} randomly drawn (seed {a.seed})") + f" {a.dataset} test images"
    base.validate()
    preflight(model, x_eval, base, Ts=list(a.T) + list(a.reading_T))
    rows = ROWS if a.rows is None else [ROWS[i] for i in a.rows]
    check_sweep(model, x_calib, base, ps, a.thresholds, a.block)
    log(f"reproducing on {header['arch']} ({a.checkpoint}): {data}, {a.n_calib} calibration "
        f"images, T={a.T}, reading rows at T={a.reading_T}")
    res = sweep(model, x_calib, x_eval, y_eval, base, ps, a.thresholds, a.block, a.T, a.reading_T,
                rows, mean, std, log, memo)
    command = cli.recorded_command("python -m icsnn_np.reproduce", argv)
    settings = {"model": header["arch"], "checkpoint": Path(a.checkpoint).name, "images": data,
                "n_calib": a.n_calib, "seed": a.seed, "coding": a.coding, "p": "/".join(map(str, ps)),
                "thresholds": "/".join(a.thresholds),
                "threshold_rule": threshold_rule(a.thresholds, model), "default reading": base.reading,
                "default granularity": base.granularity, "default compensation": base.comp,
                "block treatment": "/".join(a.block), "engine": a.engine, "backend": a.backend}
    res.update(settings=settings, command=command, arch=header["arch"],
               checkpoint_sha256=a.checkpoint_sha256)
    title = f"{header['arch']} on CIFAR-10: ANN vs converted SNNs" + (" (validation)" if a.validation else "")
    meta = {"title": title, "settings": settings, "command": command, "data": data, "arch": header["arch"]}
    cli.write_outputs(a.out, {".json": json.dumps(res, indent=1).encode(),
                              ".md": markdown(res, meta).encode(), ".png": plot(res, None, title)})
    log(f"wrote {cli.with_ext(a.out, '.md')}, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
