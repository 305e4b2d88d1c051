"""Reproduce the paper's accuracy-loss tables (Tables 2-5) and Fig. 5 for a trained model.

    python -m icsnn_np.reproduce --checkpoint runs/vgg_cpu_best.npz --data-dir ../shared/data \
        --n-test 2000 --out results/vgg_cpu_cifar10

writes ``<out>.md`` (Markdown table in the paper's format, loss = ANN - SNN in points, with
every reading of Alg. 2 and of the compensation as its own row), ``<out>.json`` and
``<out>.png`` (accuracy vs T, like Fig. 5). The four main rows run at every T; the rows that
compare readings run at ``--reading-T`` (the low-latency end, where readings matter).
Runs in the background happily: progress lines with timestamps go to stderr and ``--log``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .backend import get_xp, xp_of
from .checkpoint import atomic_write, load_checkpoint
from .convert import balance_thresholds, convert
from .data import load_dataset, normalize
from .evaluate import ConversionConfig, _split, ann_accuracy, quantile_for, snn_accuracy
from .init_mem import calibrate_variant

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
]
MAIN_ROWS = 4
PAPER_TABLE2 = {"IC-SNN (paper, VGG16)": {"ann_acc": 93.63, "loss": {"8": 9.95, "16": 2.97, "32": 1.03}}}


def calibration_split(n_train: int, n_calib: int, seed: int, n_val: int = 0):
    """Indices (sorted) of the calibration images — a seeded sample of the training set —
    and of ``n_val`` held-out validation images, the next ones of the same permutation
    (disjoint from the calibration sample; what scripts/choose_*.py measure on)."""
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[:n_calib]), np.sort(perm[n_calib:n_calib + n_val])


def held_out_validation(checkpoint, data_dir, n_calib: int, n_val: int, seed: int):
    """(model, header, x_calib, x_val, y_val) for choosing settings without the test set:
    the calibration images of ``reproduce --seed S`` and ``n_val`` other training images
    (normalised, host arrays). The network saw them in training, so compare *losses*
    against the ANN on the same images, not accuracies with the test set's."""
    model, header = load_checkpoint(checkpoint)
    ds = load_dataset("cifar10", data_dir)
    mean, std = header["mean"], header["std"]
    cal, val = calibration_split(len(ds.x_train), n_calib, seed, n_val)
    return (model, header, normalize(ds.x_train[cal], mean, std, np),
            normalize(ds.x_train[val], mean, std, np), ds.y_train[val])


def _setting(variant: str, c: ConversionConfig) -> tuple:
    """What a row's v(0) depends on: two rows with the same setting give the same numbers
    (e.g. "I-SNN remainder" is the I-SNN row when remainder is the default), so they run once."""
    reading = (c.reading, c.granularity) if variant in ("i-snn", "ic-snn", "ic-snn-fp") else ()
    comp = (c.comp,) if variant in ("c-snn", "ic-snn", "ic-snn-fp") else ()
    return (variant,) + reading + comp


def run_rows(model, x_calib, x_test, y_test, cfg: ConversionConfig, Ts, reading_Ts, rows=ROWS,
             mean=None, std=None, log=print):
    """Evaluate every row at its T list; returns the results dict (accuracy %, loss points)."""
    xp = xp_of(x_test)
    xp_calib = _split(x_calib[:cfg.n_calib], cfg.batch_size)
    t_start = time.perf_counter()
    ann = ann_accuracy(model, x_test, y_test)
    snn = convert(model)
    balance_thresholds(snn, model, xp_calib, p=cfg.p, channelwise=cfg.channelwise,
                       xp=xp, per_block=cfg.block == "paper")
    log(f"ANN accuracy {ann:.2f}% on {len(x_test)} test images")
    out = {"ann_acc": round(ann, 2), "rows": [], "n_test": int(len(x_test)),
           "n_calib": int(min(cfg.n_calib, len(x_calib)))}
    jobs = [(i, T) for i in range(len(rows)) for T in (Ts if i < MAIN_ROWS else reading_Ts)]
    total_steps = sum(T for _, T in {(_setting(rows[i][1], replace(cfg, **rows[i][2])), T)
                                     for i, T in jobs})
    done_steps = 0
    results = [dict(label=r[0], variant=r[1], **{k: getattr(replace(cfg, **r[2]), k)
               for k in ("reading", "comp", "granularity")}, T={}) for r in rows]
    done = {}                                    # (setting, T) -> the row that measured it
    for i, T in jobs:
        label, variant, over = rows[i]
        c = replace(cfg, **over)
        key = (_setting(variant, c), T)
        if key in done:                          # same v(0) setting: same numbers
            results[i]["T"][str(T)] = dict(results[done[key]]["T"][str(T)], same_as=rows[done[key]][0])
            continue
        done[key] = i
        t0 = time.perf_counter()
        calibrate_variant(snn, variant, T, xp_calib, c.reading, c.granularity, c.comp,
                          xp=xp, v0_scope=c.v0_scope,
                          coding=c.coding, chunk=c.chunk, mean=mean, std=std, seed=c.seed)
        acc, rate = snn_accuracy(snn, x_test, y_test, T, c, mean, std)
        results[i]["T"][str(T)] = {"acc": round(acc, 2), "loss": round(ann - acc, 2),
                                   "firing_rate": round(rate, 5)}
        done_steps += T
        el = time.perf_counter() - t_start
        eta = el / done_steps * (total_steps - done_steps)
        log(f"[{time.strftime('%H:%M:%S')}] {label:45s} T={T:4d} acc {acc:6.2f}% "
            f"loss {ann - acc:6.2f}  rate {rate:.4f}  ({time.perf_counter() - t0:.0f}s, ETA {eta / 60:.0f} min)")
    out["rows"] = results
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def markdown(res: dict, meta: dict) -> str:
    """The results in the paper's table format, with the settings that produced them."""
    Ts = sorted({int(t) for r in res["rows"] for t in r["T"]})
    lines = [f"# {meta['title']}", "",
             f"ANN accuracy {res['ann_acc']:.2f}% on "
             + meta.get("data", f"{res['n_test']} CIFAR-10 test images (the first {res['n_test']} "
                                f"of the official test batch)")
             + ". Loss = ANN_ACC - SNN_ACC in points; blank = not run at that T.", "",
             "| Method | v(0) reading | compensation | ANN_ACC | " + " | ".join(f"T{t}-L" for t in Ts) + " |",
             "|---|---|---|---|" + "---|" * len(Ts)]
    for r in res["rows"]:
        cells = [f"{r['T'][str(t)]['loss']:.2f}" if str(t) in r["T"] else "" for t in Ts]
        uses_reading = r["variant"] in ("i-snn", "ic-snn", "ic-snn-fp")
        uses_comp = r["variant"] in ("c-snn", "ic-snn", "ic-snn-fp")
        rd = f"{r['reading']}/{r['granularity']}" if uses_reading else ("Alg. 1" if r["variant"] == "i-snn-alg1" else "-")
        lines.append(f"| {r['label']} | {rd} | {r['comp'] if uses_comp else '-'} | {res['ann_acc']:.2f} | "
                     + " | ".join(cells) + " |")
    for name, p in PAPER_TABLE2.items():
        cells = [f"{p['loss'][str(t)]:.2f}" if str(t) in p["loss"] else "" for t in Ts]
        lines.append(f"| {name} | raw? | V/2T? | {p['ann_acc']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in meta["settings"].items()), "",
              f"Command: `{meta['command']}`", "", f"Wall time: {res['seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path, title: str):
    """Accuracy vs T for ANN and the four main variants (the paper's Fig. 5)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    Ts = sorted({int(t) for r in res["rows"][:MAIN_ROWS] for t in r["T"]})
    ax.axhline(res["ann_acc"], color="k", ls="--", label=f"ANN ({res['ann_acc']:.1f}%)")
    for r, mk in zip(res["rows"][:MAIN_ROWS], "osD^"):
        ax.plot(Ts, [r["T"][str(t)]["acc"] for t in Ts], marker=mk, label=r["label"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ts, [str(t) for t in Ts])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def _with(stem: Path, ext: str) -> Path:
    """``stem`` + ``ext``: a stem may contain dots (``..._p0.999``), so no with_suffix."""
    return stem.with_name(stem.name + ext)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m icsnn_np.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--n-calib", type=int, default=256)
    p.add_argument("--T", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--reading-T", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--rows", type=int, nargs="*", default=None, help="row indices to run (default all)")
    p.add_argument("--p", type=float, default=None,
                   help="threshold quantile; default: the p stored with the checkpoint, else 0.99")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--comp", default=ConversionConfig.comp, choices=["literal", "half"],
                   help="compensation of the main C-SNN and IC-SNN rows")
    p.add_argument("--reading", default=ConversionConfig.reading, choices=["raw", "remainder", "clip"],
                   help="Alg. 2 reading of the main I-SNN and IC-SNN rows")
    p.add_argument("--block", default="node", choices=["node", "paper"],
                   help="ResNets: own V_th and v(0) per IF node, or the paper's one V_th per "
                        "block with v(0) on its first node")
    p.add_argument("--out", default="results/vgg_cpu_cifar10", help="output path stem")
    p.add_argument("--log", default=None, help="also append progress to this file")
    a = p.parse_args(argv)
    logf = open(a.log, "a") if a.log else None

    def log(s):
        print(s, file=sys.stderr, flush=True)
        if logf:
            print(s, file=logf, flush=True)

    xp = get_xp(a.backend)
    model, header = load_checkpoint(a.checkpoint)
    model.to(xp)
    ds = load_dataset(a.dataset, a.data_dir)
    mean, std = header["mean"], header["std"]
    a.p = quantile_for(header, a.p)
    # calibration images: a fixed, seeded sample of the training set (not the test set)
    idx, _ = calibration_split(len(ds.x_train), a.n_calib, a.seed)
    x_calib = normalize(ds.x_train[idx], mean, std, xp)
    x_test = normalize(ds.x_test[:a.n_test], mean, std, xp)
    cfg = ConversionConfig(T=tuple(a.T), p=a.p, coding=a.coding, n_calib=a.n_calib, seed=a.seed,
                           chunk=a.chunk, batch_size=a.batch_size, block=a.block, comp=a.comp,
                           reading=a.reading).validate()
    rows = ROWS if a.rows is None else [ROWS[i] for i in a.rows]
    log(f"reproducing on {header['arch']} ({a.checkpoint}), {len(x_test)} test images, "
        f"{a.n_calib} calibration images, T={a.T}, reading rows at T={a.reading_T}")
    res = run_rows(model, x_calib, x_test, ds.y_test[:a.n_test], cfg, a.T, a.reading_T, rows,
                   mean=mean, std=std, log=log)
    command = "python -m icsnn_np.reproduce " + " ".join(argv if argv is not None else sys.argv[1:])
    settings = {"model": header["arch"], "checkpoint": Path(a.checkpoint).name, "dataset": a.dataset,
                "n_test": a.n_test, "n_calib": a.n_calib, "seed": a.seed, "coding": a.coding,
                "p": a.p, "threshold": "layer-wise", "default reading": cfg.reading,
                "default granularity": cfg.granularity, "default compensation": cfg.comp,
                "block treatment": a.block, "chunk": a.chunk, "backend": a.backend}
    res.update(settings=settings, command=command, paper=PAPER_TABLE2)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{header['arch']} on CIFAR-10: ANN vs converted SNNs"
    atomic_write(_with(out, ".json"), lambda f: f.write(json.dumps(res, indent=1).encode()))
    atomic_write(_with(out, ".md"), lambda f: f.write(
        markdown(res, {"title": title, "settings": settings, "command": command}).encode()))
    plot(res, _with(out, ".png"), title)
    log(f"wrote {_with(out, '.md')}, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
