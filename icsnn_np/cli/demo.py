"""Convert a trained CIFAR network and compare SNN, I-SNN, C-SNN and IC-SNN.

    python -m icsnn_np.demo --backend numpy --T 32
    python -m icsnn_np.demo --T 8 16 32 --json

By default it runs offline on what the package bundles: the CPU-sized VGG trained on
CIFAR-10 (``icsnn_np/assets/vgg_cpu_cifar10.npz``) and a real 1,000 + 1,000 image slice of
CIFAR-10 (its training images balance thresholds and run Alg. 2, its test images measure
accuracy). ``--dataset cifar10 --calib-from cifar10-slice`` measures on a folder holding the
CIFAR-10 test batch alone (e.g. ``test_batch.bin``) and calibrates on the slice's training
images. Without a bundled model it first trains a small model on the slice (a few
minutes on 2 cores). Progress goes to stderr; the table (or ``--json``) to stdout.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..backend import backend_name, get_xp
from ..beyond.methods import TABLE
from ..beyond.prerun import PRERUN_STEPS
from ..beyond.qcfs import qcfs_layers
from ..beyond.thresholds import THRESHOLD_SEARCHES
from ..checks import MAX_T
from ..init_mem import COMPENSATIONS, GRANULARITIES, READING, READINGS
from ..io.checkpoint import bundled_models, check_fits_data, load_checkpoint, resolve_checkpoint
from ..io.data import DATASETS, load_dataset
from ..io.preprocess import normalize
from ..models import MODELS
from ..runs.engine import DEFAULT_ENGINE, ENGINES
from ..runs.evaluate import (ConversionConfig, calibrated_snn, calibration_passes, evaluate_conversion,
                             format_accuracy_table, quantile_for, threshold_rule)
from ..runs.progress import tracking
from ..runs.protocol import SUBSETS, calibration_split, test_indices
from ..runs.stats import format_stats, spike_stats
from ..runs.training import TrainConfig, train
from ..variants import PAPER_VARIANTS
from . import common as cli

DEFAULT_MODEL = "vgg_cpu"
CALIB_SOURCES = ("train", "cifar10-slice")


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def get_model(args, xp, ds):
    """Load ``--checkpoint`` (a file or a bundled model's name; default the bundled vgg_cpu)
    and check it fits the dataset ``ds`` (normalisation, class count); without any bundled
    model, train one on the slice first. Returns (model, header, mean, std)."""
    if args.checkpoint or DEFAULT_MODEL in bundled_models():
        path = resolve_checkpoint(args.checkpoint or DEFAULT_MODEL)
        model, header = load_checkpoint(path)
        mean, std = check_fits_data(header, ds.num_classes, ds.name, str(path))
        _log(f"model: {header['arch']} from {path} (trained on {header.get('dataset', '?')}, "
             f"test accuracy there {100 * header.get('test_acc', float('nan')):.2f}%)")
        return model.to(xp), header, mean, std
    out = workdir_model(args)
    with cli.claim(args.workdir, _log, "--workdir", Path(args.workdir) / ".demo.lock"):  # one per workdir
        cfg = TrainConfig(dataset=args.dataset, model=args.model, epochs=args.train_epochs,
                          lr=0.02, batch_size=64, seed=args.seed, backend=args.backend,
                          data_dir=args.data_dir, out=str(out), force=True).validate()
        _log(f"no bundled model: training {args.model} on {args.dataset} for {args.train_epochs} "
             f"epochs first (a few minutes on 2 CPU cores)")
        res = train(cfg, log=_log)
    return res["model"], {"arch": args.model, "dataset": args.dataset}, res["mean"], res["std"]


def workdir_model(args) -> Path:
    """Where a model trained on the spot goes (``--workdir``), checked writable, naming
    ``--workdir`` (the demo's own file there is replaced by a new training)."""
    out = Path(args.workdir) / f"demo_{args.model}_{args.dataset}.npz"
    cli.check_output_file(out, "--workdir: the on-the-spot model")
    return out


def run_stats(model, x_calib, x, cfg, variant, mean, std):
    """``--stats``: spikes, SOPs and energy of ``variant`` at each T of ``cfg`` (per image)."""
    out = {"variant": variant, "per_T": {}}
    n_cal = min(cfg.n_calib, len(x_calib))
    with tracking(sum(T * (len(x) + n_cal * calibration_passes(variant)) for T in cfg.T), _log,
                  what="spike count"):
        for T in cfg.T:
            _log(f"counting spikes and synaptic operations of {variant} at T={T} on {len(x)} images")
            snn, run = calibrated_snn(model, x_calib, variant, T, cfg, mean=mean, std=std)
            out["per_T"][str(T)] = spike_stats(model, snn, x, T, batch_size=cfg.batch_size,
                                               sim=run, **cfg.sim_kw(mean, std))
    return out


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv, kept="nothing was written (the demo prints its table at the end)")


def parse_args(argv):
    p = cli.ArgumentParser(prog="python -m icsnn_np.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--T", type=cli.steps(), nargs="+", default=[32],
                   help=f"time steps (one or more, each 1 .. {MAX_T})")
    p.add_argument("--variants", nargs="+", default=list(PAPER_VARIANTS),
                   type=cli.choice(TABLE, "variant"), help=f"any of {', '.join(TABLE)}")
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint from `python -m icsnn_np.train`, or the name of a bundled "
                        "model (vgg_cpu, the default; see README)")
    p.add_argument("--model", default=None, type=cli.choice(sorted(MODELS), "model"),
                   help="architecture to train on the spot when no model is bundled (default "
                        "vgg_cpu); to run a bundled model, use --checkpoint")
    p.add_argument("--dataset", default="cifar10-slice", type=cli.choice(DATASETS, "dataset"),
                   help="cifar10-slice (bundled) | cifar10 | cifar100")
    p.add_argument("--data-dir", default=None, help="folder with the CIFAR files (default $ICSNN_DATA)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--n-test", type=cli.count("--n-test"), default=1000, help="test images to evaluate")
    p.add_argument("--test-subset", default="first", choices=SUBSETS,
                   help="the first --n-test test images, or a seeded random sample of them")
    p.add_argument("--n-calib", type=cli.count("--n-calib"), default=256,
                   help="training images (a seeded sample) for thresholds and Alg. 2")
    p.add_argument("--calib-from", default="train", choices=CALIB_SOURCES,
                   help="where the calibration images come from: train (the training images of "
                        "--dataset) or cifar10-slice (the bundled slice's training images; then "
                        "--dataset cifar10 needs its test batch only)")
    p.add_argument("--p", type=cli.quantile(), default=None,
                   help="threshold quantile in (0, 1]; default: the p stored with the model "
                        "(chosen on held-out training images), else 0.99")
    p.add_argument("--channelwise", action="store_true", help="per-channel thresholds")
    p.add_argument("--thresholds", default="quantile", choices=THRESHOLD_SEARCHES,
                   help="quantile: threshold balancing at p; mse: SNN Calibration's search for "
                        "the V_th of least squared error at each T (layer-wise)")
    p.add_argument("--prerun", type=cli.count("--prerun", minimum=0), default=PRERUN_STEPS,
                   help="pre-run steps of cos and srp, run before their T counted steps")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"])
    p.add_argument("--reading", default=READING, choices=READINGS, help="Alg. 2 reading")
    p.add_argument("--granularity", default="layer", choices=GRANULARITIES, help="v(0) granularity")
    p.add_argument("--comp", default="literal", choices=COMPENSATIONS, help="coding compensation size")
    p.add_argument("--block", default="node", choices=["node", "paper"],
                   help="ResNets: own V_th and v(0) per IF node (node) or one V_th per residual "
                        "block with v(0) on its first node (paper)")
    p.add_argument("--batch-size", type=cli.count("--batch-size"), default=250)
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help="fast (default: Winograd convs, time chunks, threads) or reference "
                        "(the step-by-step teaching simulation); the same spikes up to float32 rounding")
    p.add_argument("--chunk", type=cli.count("--chunk"), default=None,
                   help="fast engine: time steps per layer pass")
    p.add_argument("--seed", type=cli.count("--seed", minimum=0), default=0)
    p.add_argument("--train-epochs", type=cli.count("--train-epochs"), default=30,
                   help="epochs when training on the spot")
    p.add_argument("--workdir", default=None, help="where an on-the-spot model is saved (default runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--stats", action="store_true",
                   help="also count spikes, synaptic operations and energy (per image) at each T")
    p.add_argument("--stats-variant", default="ic-snn", type=cli.choice(TABLE, "variant"),
                   help="the variant --stats measures")
    p.add_argument("--n-stats", type=cli.count("--n-stats"), default=200,
                   help="test images --stats runs on")
    return p.parse_args(argv)


def load_data(a):
    """(test dataset, calibration dataset): with ``--calib-from cifar10-slice`` only the test
    file of ``--dataset`` is read and the bundled slice's training images calibrate."""
    if a.calib_from == "train" or a.dataset == "cifar10-slice":
        ds = load_dataset(a.dataset, a.data_dir, download=a.download)
        return ds, ds
    if a.dataset != "cifar10":
        raise ValueError(f"--calib-from {a.calib_from} calibrates on CIFAR-10 images: it needs "
                         f"--dataset cifar10, not {a.dataset}")
    ds = load_dataset(a.dataset, a.data_dir, download=a.download, test_only=True)
    return ds, load_dataset(a.calib_from)


def _main(argv):
    a = parse_args(argv)                 # every name and count is checked here, before any work
    xp = get_xp(a.backend)
    cfg = ConversionConfig(T=tuple(a.T), variants=tuple(a.variants), p=quantile_for({}, a.p),
                           channelwise=a.channelwise, coding=a.coding, reading=a.reading,
                           granularity=a.granularity, comp=a.comp, block=a.block, n_calib=a.n_calib,
                           batch_size=a.batch_size, engine=a.engine, chunk=a.chunk,
                           seed=a.seed, threshold_search=a.thresholds, prerun=a.prerun).validate()
    on_the_spot = not a.checkpoint and DEFAULT_MODEL not in bundled_models()
    if not on_the_spot and a.model not in (None, a.checkpoint or DEFAULT_MODEL):   # not what runs
        raise ValueError(f"--model {a.model} is what the demo trains when no model is bundled; "
                         f"to run a model, name it: --checkpoint {a.model} (bundled: "
                         f"{', '.join(sorted(bundled_models()))}) or a checkpoint file")
    if not on_the_spot and a.workdir:
        _log(f"note: --workdir {a.workdir} is not used: the model is "
             f"{a.checkpoint or 'the bundled ' + DEFAULT_MODEL}, nothing is trained")
    a.model, a.workdir = a.model or DEFAULT_MODEL, a.workdir or "runs"
    if a.checkpoint:
        resolve_checkpoint(a.checkpoint)              # a missing file: said before loading data
    elif on_the_spot:
        workdir_model(a)                              # where it will train: said before the data
    ds, calib_ds = load_data(a)
    model, header, mean, std = get_model(a, xp, ds)
    cfg.p = quantile_for(header, a.p)               # a stored p is checked too
    if a.p is None and "p" in header:
        _log(f"threshold quantile p = {header['p']} (stored with the model: "
             f"{header.get('p_chosen_by', '')})")
    a.p = cfg.p
    cfg.validate()
    cal, _ = calibration_split(len(calib_ds.x_train), a.n_calib, a.seed)     # as reproduce does
    idx = test_indices(len(ds.x_test), a.n_test, a.test_subset, a.seed)
    images = {"calibration": f"{len(cal)} training images of {calib_ds.name} (seed {a.seed})",
              "test": f"{a.test_subset} {len(idx)} test images of {ds.name}"}
    _log(f"calibration: {images['calibration']}, {calib_ds.source}; test: {images['test']}, "
         f"{ds.source}")
    x_calib = normalize(calib_ds.x_train[cal], mean, std, xp)
    x_test, y_test = normalize(ds.x_test[idx], mean, std, xp), ds.y_test[idx]
    t0 = time.perf_counter()
    res = evaluate_conversion(model, x_calib, x_test, y_test, cfg, mean=mean, std=std, log=_log)
    if a.stats:
        res["stats"] = run_stats(model, x_calib, x_test[:a.n_stats], cfg, a.stats_variant,
                                 mean, std)
    res.update(model=header["arch"], dataset=a.dataset, images=images)
    res["config"]["threshold_rule"] = threshold_rule([cfg.threshold_mode], model)
    if a.json:
        print(json.dumps(res))
    else:
        print(format_accuracy_table(res))
        for T, d in res.get("stats", {}).get("per_T", {}).items():
            print()
            print(f"{res['stats']['variant']}: " + format_stats(d))
        vth = "V_th = trained QCFS λ" if qcfs_layers(model) else f"p={a.p}"
        print(f"({backend_name(xp)} backend, {a.coding} coding, {vth}, Alg. 2 reading "
              f"{a.reading}/{a.granularity}, compensation {a.comp}; calibration: "
              f"{images['calibration']}; {time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
