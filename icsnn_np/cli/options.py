"""One vocabulary for every command: the same flag means the same thing with the same values.

    p = options.parser("demo", __doc__, EXAMPLES)       # defaults shown, examples, env vars
    options.model_data(p, dataset="cifar10-slice")       # --checkpoint --dataset --data-dir ...
    options.conversion(p)                                # --T --p --thresholds --variants ...
    options.running(p); options.outputs(p, resume=True)  # --backend --engine ... --out --json

Old spellings of 0.1 keep working for this version with a one-line note (``deprecated``).
"""
from __future__ import annotations

import argparse
import sys

from ..beyond.methods import METHODS
from ..beyond.prerun import PRERUN_STEPS
from ..checks import MAX_T
from ..io.data import DATA_ENV, DATASETS
from ..runs.engine import DEFAULT_ENGINE, ENGINES
from ..runs.protocol import SUBSETS
from .common import ArgumentParser, choice, count, quantile, steps, version

THRESHOLDS = ("layer", "channel", "mse")
ENVIRONMENT = (f"environment: {DATA_ENV} (where the CIFAR files are; --data-dir wins), "
               "ICSNN_NUM_THREADS (the fast engine's threads; default: the cores), "
               "OPENBLAS_NUM_THREADS (NumPy's BLAS threads)")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default shown (an unset one's meaning is in its help); the description
    and examples kept as written."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or "") or \
                (action.nargs == 0 and action.const is False):          # a store_false flag
            return action.help
        return super()._get_help_string(action)


def parser(command: str, doc: str, examples: str) -> ArgumentParser:
    """A command's parser: its docstring's first paragraph, its examples and the environment
    variables the package reads at the end of ``--help``, and ``--version``."""
    p = ArgumentParser(prog=f"python -m icsnn_np.{command}", formatter_class=Formatter,
                       description=doc.strip().split("\n\n")[0],
                       epilog=f"examples (times on 2 CPU cores):\n{examples.rstrip()}\n\n{ENVIRONMENT}")
    p.add_argument("--version", action="version", version=f"icsnn-np {version()}")
    return p


def model_data(p, dataset="cifar10", n_test=1000, n_calib=256, checkpoint="vgg_cpu",
               validation=False):
    """The network, the data and which images calibrate and measure (runs/protocol.py)."""
    p.add_argument("--checkpoint", default=checkpoint,
                   help="a bundled model's name (vgg_cpu, vgg16_cpu, resnet20, vgg_cpu_qcfs) or a "
                        "checkpoint file from `python -m icsnn_np.train`")
    p.add_argument("--dataset", default=dataset, type=choice(DATASETS, "dataset"),
                   help=" | ".join(DATASETS) + " (cifar10-slice: 1,000 + 1,000 real images, bundled)")
    p.add_argument("--data-dir", default=None, help=f"folder holding the CIFAR files (default ${DATA_ENV})")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--n-test", type=count("--n-test"), default=n_test, help="test images to measure on")
    p.add_argument("--test-subset", default="first", choices=SUBSETS,
                   help="the first --n-test test images, or a seeded random sample of them")
    p.add_argument("--n-calib", type=count("--n-calib"), default=n_calib,
                   help="training images (a seeded sample) for thresholds and Alg. 2")
    if validation:
        p.add_argument("--validation", type=count("--validation"), default=None, metavar="N",
                       help="measure on N held-out training images instead of the test set")


def conversion(p, T=(32,), thresholds=("layer",), variants=("snn", "i-snn", "c-snn", "ic-snn")):
    """How the SNN is made: time steps, threshold rule and quantile, variants, readings. Every
    command takes several values of each (reproduce sweeps them; demo and compare run one)."""
    p.add_argument("--T", type=steps(), nargs="+", default=list(T),
                   help=f"time steps (one or more, each 1 .. {MAX_T})")
    p.add_argument("--p", type=quantile(), nargs="+", default=None,
                   help="threshold quantile in (0, 1]; default: the p stored with the model, else 0.99")
    p.add_argument("--thresholds", nargs="+", type=thresholds_arg, default=list(thresholds),
                   help="layer: the paper's p-quantile per layer; channel: per channel (ours); "
                        "mse: SNN Calibration's search at each T")
    p.add_argument("--variants", nargs="+", type=choice(METHODS, "variant"), default=list(variants),
                   help="methods by name: " + ", ".join(METHODS))
    p.add_argument("--prerun", type=count("--prerun", minimum=0), default=PRERUN_STEPS,
                   help="pre-run steps of cos, cos-layer and srp, run before their T counted steps")


def running(p, batch_size=250):
    """Where and how it runs."""
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"],
                   help="array library: numpy, or cupy on a GPU (pip install -e '.[gpu]')")
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help="fast (Winograd convs, time chunks, threads) or reference (the teaching loop)")
    p.add_argument("--chunk", type=count("--chunk"), default=None,
                   help="fast engine: time steps per layer pass (default: the engine's)")
    p.add_argument("--batch-size", type=count("--batch-size"), default=batch_size,
                   help="images per simulated batch")
    p.add_argument("--seed", type=count("--seed", minimum=0), default=0,
                   help="seeds the calibration sample and rate coding")


def outputs(p, out=None, resume=False, what="the results"):
    """Where results go: ``--out`` a file stem (the command adds its suffixes) everywhere."""
    p.add_argument("--out", default=out, metavar="STEM",
                   help=f"file stem for {what} (the command adds the suffixes)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument("--log", default=None, help="also append progress to this file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    if resume:
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run of the same command (kept as it goes)")


def thresholds_arg(text: str) -> str:
    """A threshold rule; 0.1's ``quantile`` still means ``layer`` (with a note)."""
    if text == "quantile":
        deprecated("--thresholds quantile", "--thresholds layer")
        return "layer"
    return choice(THRESHOLDS, "threshold rule")(text)


def deprecated(old: str, new: str):
    print(f"note: {old} is the 0.1 spelling, kept for this version: use {new}", file=sys.stderr)


def stem_of(out: str, suffixes, note: bool = True) -> str:
    """``--out`` as a stem: 0.1 took a file name with its suffix, still accepted (with a note
    where the suffix could mislead)."""
    for s in suffixes:
        if out.endswith(s):
            if note:
                deprecated(f"--out {out}", f"--out {out[:-len(s)]} (a stem)")
            return out[:-len(s)]
    return out
