"""``python -m icsnn_np.train``: train a ReLU ANN with hand-written SGD (runs/training.py).

Progress (one line per epoch, and within a long epoch every EVERY_S seconds) goes to stderr.
An existing ``--out`` is replaced only with ``--force`` (or continued with ``--resume``).

    python -m icsnn_np.train --dataset cifar10 --model vgg_cpu --epochs 20 --out runs/vgg_cpu.npz
"""
from __future__ import annotations

import sys

from ..io.data import DATASETS
from ..models import MODELS
from ..runs.engine import ENGINES
from ..runs.training import ACTIVATIONS, INITS, TrainConfig, train
from . import common as cli


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv)


def _main(argv):
    p = cli.ArgumentParser(prog="python -m icsnn_np.train", description="Train a ReLU ANN with hand-written SGD.")
    d = TrainConfig()
    p.add_argument("--dataset", default=d.dataset, type=cli.choice(DATASETS, "dataset"),
                   help="cifar10 | cifar100 | cifar10-slice")
    p.add_argument("--model", default=d.model, type=cli.choice(sorted(MODELS), "model"),
                   help="vgg_cpu | vgg16_cpu | vgg16 | resnet20")
    p.add_argument("--epochs", type=cli.count("--epochs"), default=d.epochs)
    p.add_argument("--batch-size", type=cli.count("--batch-size"), default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--seed", type=cli.count("--seed", minimum=0), default=d.seed)
    p.add_argument("--backend", default=d.backend, choices=["numpy", "cupy"])
    p.add_argument("--engine", default=d.engine, choices=ENGINES,
                   help="fast (default: Winograd convs, threads) or reference (the teaching layers)")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--data-dir", default=None, help="folder holding the CIFAR files (default $ICSNN_DATA)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--train-limit", type=cli.count("--train-limit"), default=None,
                   help="use only the first N training images (N >= 1)")
    p.add_argument("--milestones", type=cli.count("a milestone epoch"), nargs="+", default=[],
                   help="epochs at which lr is divided by 5 (default: the paper's, scaled)")
    p.add_argument("--warmup", type=cli.count("--warmup", minimum=0), default=d.warmup,
                   help="epochs of linear lr warm-up")
    p.add_argument("--init", default=d.init, choices=INITS,
                   help="weight initialisation: he, or fixup for BatchNorm-free ResNets")
    p.add_argument("--activation", default=d.activation, choices=ACTIVATIONS,
                   help="relu (the paper) or qcfs (Bu et al. 2022: quantisation-clip-floor-shift "
                        "with a trainable threshold; needs --levels)")
    p.add_argument("--levels", type=cli.count("--levels"), default=None,
                   help="QCFS quantisation levels L")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's weights and normalisation (fine-tuning; "
                        "with --activation qcfs each λ starts at the layer's 0.999-quantile; a "
                        "QCFS checkpoint goes on as QCFS at its own L)")
    p.add_argument("--val-size", type=cli.count("--val-size"), default=None, metavar="N",
                   help="training images held out for validation, on which the best checkpoint "
                        "is chosen (default: a tenth, at most 5,000)")
    p.add_argument("--val-seed", type=cli.count("--val-seed", minimum=0), default=d.val_seed,
                   help="draws the validation images (default 0, apart from --seed)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from --out and its _resume.npz")
    p.add_argument("--out", default=d.out, help="checkpoint path (best by validation accuracy is saved as <stem>_best.npz)")
    p.add_argument("--force", action="store_true",
                   help="replace the checkpoints of an earlier run at --out (else refused)")
    a = p.parse_args(argv)
    cfg = TrainConfig(**{k: (tuple(v) if k == "milestones" else v) for k, v in vars(a).items()})
    cfg.validate()                             # lr, momentum, the output paths: before any work
    train(cfg, log=cli.log_stderr)             # progress and epoch lines: stderr
    return 0


if __name__ == "__main__":
    sys.exit(main())
