"""Convert a trained CIFAR network and compare SNN, I-SNN, C-SNN and IC-SNN.

    python -m icsnn_np.demo --backend numpy --T 32
    python -m icsnn_np.demo --T 8 16 32 --json

By default it runs offline on what the package bundles: the CPU-sized VGG trained on
CIFAR-10 (``icsnn_np/assets/vgg_cpu_cifar10.npz``) and a real 1,000 + 1,000 image slice of
CIFAR-10 (its training images balance thresholds and run Alg. 2, its test images measure
accuracy). Without a bundled model it first trains a small model on the slice (a few
minutes on 2 cores). Progress goes to stderr; the table (or ``--json``) to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .backend import BackendError, backend_name, get_xp
from .checkpoint import CheckpointError, load_checkpoint
from .data import DatasetError, load_dataset, normalize
from .evaluate import (ConversionConfig, calibrated_snn, evaluate_conversion,
                       format_accuracy_table, quantile_for)
from .init_mem import COMPENSATIONS, GRANULARITIES, READINGS, VARIANTS
from .stats import format_stats, spike_stats

BUNDLED_MODEL = Path(__file__).with_name("assets") / "vgg_cpu_cifar10.npz"


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def get_model(args, xp):
    """Load ``--checkpoint`` (or the bundled model); otherwise train one on the slice."""
    path = Path(args.checkpoint) if args.checkpoint else BUNDLED_MODEL
    if path.is_file():
        model, header = load_checkpoint(path)
        _log(f"model: {header['arch']} from {path} (trained on {header.get('dataset', '?')}, "
             f"test accuracy there {100 * header.get('test_acc', float('nan')):.2f}%)")
        return model.to(xp), header
    if args.checkpoint:
        raise CheckpointError(f"checkpoint {path} does not exist")
    from .train import TrainConfig, train  # only needed on this path
    _log(f"no bundled model: training {args.model} on {args.dataset} for {args.train_epochs} "
         f"epochs first (a few minutes on 2 CPU cores)")
    out = Path(args.workdir) / f"demo_{args.model}_{args.dataset}.npz"
    res = train(TrainConfig(dataset=args.dataset, model=args.model, epochs=args.train_epochs,
                            lr=0.02, batch_size=64, seed=args.seed, backend=args.backend,
                            data_dir=args.data_dir, out=str(out)), log=_log)
    return res["model"], {"arch": args.model, "mean": res["mean"].tolist(),
                          "std": res["std"].tolist(), "dataset": args.dataset}


def run_stats(model, x_calib, x, cfg, variant, mean, std):
    """``--stats``: spikes, SOPs and energy of ``variant`` at each T of ``cfg`` (per image)."""
    out = {"variant": variant, "per_T": {}}
    for T in cfg.T:
        _log(f"counting spikes and synaptic operations of {variant} at T={T} on {len(x)} images")
        snn = calibrated_snn(model, x_calib, variant, T, cfg, mean=mean, std=std)
        out["per_T"][str(T)] = spike_stats(model, snn, x, T, coding=cfg.coding, chunk=cfg.chunk,
                                           mean=mean, std=std, seed=cfg.seed,
                                           batch_size=cfg.batch_size)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m icsnn_np.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--T", type=int, nargs="+", default=[32], help="time steps (one or more)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS),
                   help=f"any of {', '.join(VARIANTS)}, ic-snn-fp, i-snn-alg1")
    p.add_argument("--checkpoint", default=None, help="a checkpoint from `python -m icsnn_np.train`")
    p.add_argument("--model", default="vgg_cpu", help="architecture to train when no checkpoint exists")
    p.add_argument("--dataset", default="cifar10-slice", help="cifar10-slice (bundled) | cifar10 | cifar100")
    p.add_argument("--data-dir", default=None, help="folder with the CIFAR files (default $ICSNN_DATA)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--n-test", type=int, default=1000, help="test images to evaluate")
    p.add_argument("--n-calib", type=int, default=256, help="training images for thresholds and Alg. 2")
    p.add_argument("--p", type=float, default=None,
                   help="threshold quantile in (0, 1]; default: the p stored with the model "
                        "(chosen on held-out training images, scripts/choose_p.py), else 0.99")
    p.add_argument("--channelwise", action="store_true", help="per-channel thresholds")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"])
    p.add_argument("--reading", default="remainder", choices=READINGS, help="Alg. 2 reading")
    p.add_argument("--granularity", default="layer", choices=GRANULARITIES, help="v(0) granularity")
    p.add_argument("--comp", default="literal", choices=COMPENSATIONS, help="coding compensation size")
    p.add_argument("--block", default="node", choices=["node", "paper"],
                   help="ResNets: own V_th and v(0) per IF node (node) or one V_th per residual "
                        "block with v(0) on its first node (paper)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--chunk", type=int, default=8, help="time steps per layer pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-epochs", type=int, default=30, help="epochs when training on the spot")
    p.add_argument("--workdir", default="runs", help="where an on-the-spot model is saved")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--stats", action="store_true",
                   help="also count spikes, synaptic operations and energy (per image) at each T")
    p.add_argument("--stats-variant", default="ic-snn", help="the variant --stats measures")
    p.add_argument("--n-stats", type=int, default=200, help="test images --stats runs on")
    a = p.parse_args(argv)
    if a.n_test < 1:
        p.error("--n-test must be >= 1")
    if a.n_stats < 1:
        p.error("--n-stats must be >= 1")
    try:
        xp = get_xp(a.backend)
        cfg = ConversionConfig(T=tuple(a.T), variants=tuple(a.variants), p=quantile_for({}, a.p),
                               channelwise=a.channelwise, coding=a.coding, reading=a.reading,
                               granularity=a.granularity, comp=a.comp, block=a.block, n_calib=a.n_calib,
                               batch_size=a.batch_size, chunk=a.chunk, seed=a.seed).validate()
        ds = load_dataset(a.dataset, a.data_dir, download=a.download)
        model, header = get_model(a, xp)
        if a.p is None and "p" in header:
            _log(f"threshold quantile p = {header['p']} (stored with the model: "
                 f"{header.get('p_chosen_by', '')})")
        cfg.p = a.p = quantile_for(header, a.p)
        cfg.validate()                                  # a stored p is checked too
        mean, std = header["mean"], header["std"]
        x_calib = normalize(ds.x_train[:a.n_calib], mean, std, xp)
        x_test = normalize(ds.x_test[:a.n_test], mean, std, xp)
        y_test = ds.y_test[:a.n_test]
        t0 = time.perf_counter()
        res = evaluate_conversion(model, x_calib, x_test, y_test, cfg, mean=mean, std=std, log=_log)
        if a.stats:
            res["stats"] = run_stats(model, x_calib, x_test[:a.n_stats], cfg, a.stats_variant,
                                     mean, std)
    except (ValueError, BackendError, DatasetError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res.update(model=header["arch"], dataset=a.dataset)
    if a.json:
        print(json.dumps(res))
    else:
        print(format_accuracy_table(res))
        for T, d in res.get("stats", {}).get("per_T", {}).items():
            print()
            print(f"{res['stats']['variant']}: " + format_stats(d))
        print(f"({backend_name(xp)} backend, {a.coding} coding, p={a.p}, Alg. 2 reading "
              f"{a.reading}/{a.granularity}, compensation {a.comp}; {time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
