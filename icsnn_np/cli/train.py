"""Train a ReLU ANN (or a QCFS one) with the hand-written layers and SGD: the paper's recipe,
scaled to --epochs. With the defaults (the paper's 300 epochs on CIFAR-10) it runs for days on 2
CPU cores: pick --epochs (18 epochs of vgg_cpu: about 40 minutes); each epoch prints its ETA. A validation split is held out of the training images and picks the best
epoch (<out>_best.npz); the test set is scored for reporting only. Progress, one line per
epoch, goes to stderr; the summary (or --json) to stdout. The training loop itself is
icsnn_np.runs.training.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..io.data import DATASETS
from ..models import MODELS
from ..runs.engine import ENGINES
from ..runs.training import ACTIVATIONS, INITS, TrainConfig, train
from . import common as cli
from . import options

EXAMPLES = """\
  python -m icsnn_np.train --dataset cifar10-slice --epochs 1 --train-limit 200 --out runs/tiny   # ~10 s
  python -m icsnn_np.train --dataset cifar10 --model vgg_cpu --epochs 18 --out runs/vgg_cpu   # ~40 min
  python -m icsnn_np.train --dataset cifar10 --activation qcfs --levels 8 --init-from vgg_cpu \\
      --epochs 10 --lr 0.02 --out runs/vgg_cpu_qcfs                                         # ~25 min"""


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv)


def parser():
    p, d = options.parser("train", __doc__, EXAMPLES), TrainConfig()
    p.add_argument("--dataset", default=d.dataset, type=cli.choice(DATASETS, "dataset"),
                   help=" | ".join(DATASETS))
    p.add_argument("--model", default=d.model, type=cli.choice(sorted(MODELS), "model"),
                   help=" | ".join(sorted(MODELS)))
    p.add_argument("--data-dir", default=None, help="folder holding the CIFAR files (default $ICSNN_DATA)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--epochs", type=cli.count("--epochs"), default=d.epochs, help="epochs to train")
    p.add_argument("--batch-size", type=cli.count("--batch-size"), default=d.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 weight decay")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crop and flip (the paper's augmentation is on by default)")
    p.add_argument("--train-limit", type=cli.count("--train-limit"), default=None,
                   help="use only the first N training images")
    p.add_argument("--milestones", type=cli.count("a milestone epoch"), nargs="+", default=[],
                   help="epochs at which lr is divided by 5 (default: the paper's, scaled)")
    p.add_argument("--warmup", type=cli.count("--warmup", minimum=0), default=d.warmup,
                   help="epochs of linear lr warm-up")
    p.add_argument("--init", default=d.init, choices=INITS,
                   help="weight initialisation: he, or fixup for BatchNorm-free ResNets")
    p.add_argument("--activation", default=d.activation, choices=ACTIVATIONS,
                   help="relu (the paper) or qcfs (Bu et al. 2022, trainable threshold; needs --levels)")
    p.add_argument("--levels", type=cli.count("--levels"), default=None, help="QCFS quantisation levels L")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's weights and normalisation (fine-tuning; a "
                        "QCFS checkpoint goes on as QCFS at its own L)")
    p.add_argument("--val-size", type=cli.count("--val-size"), default=None, metavar="N",
                   help="training images held out for validation (default: a tenth, at most 5,000)")
    p.add_argument("--val-seed", type=cli.count("--val-seed", minimum=0), default=d.val_seed,
                   help="draws the validation images")
    p.add_argument("--backend", default=d.backend, choices=["numpy", "cupy"], help="array library")
    p.add_argument("--engine", default=d.engine, choices=ENGINES,
                   help="fast (Winograd convs, threads) or reference (the teaching layers)")
    p.add_argument("--seed", type=cli.count("--seed", minimum=0), default=d.seed,
                   help="seeds the weights and the batches")
    options.outputs(p, out=d.out.removesuffix(".npz"), resume=True,
                    what="<out>.npz (last epoch) and <out>_best.npz (best on validation)")
    return p


def parse_args(argv):
    a = parser().parse_args(argv)
    if Path(a.out).is_dir():
        raise ValueError(f"--out {a.out} is an existing folder; name a stem (--out {Path(a.out) / 'model'} "
                         f"writes {Path(a.out) / 'model.npz'} and {Path(a.out) / 'model_best.npz'})")
    a.out = options.stem_of(a.out, (".npz",), note=False) + ".npz"    # X.npz names that file
    return a


def _main(argv):
    a = parse_args(argv)
    show, log_file = a.json, a.log
    del a.json, a.log
    cfg = TrainConfig(**{k: (tuple(v) if k == "milestones" else v) for k, v in vars(a).items()})
    cfg.validate()                             # lr, momentum, the output paths: before any work
    with cli.progress_log(log_file) as log:
        res = train(cfg, log=log)              # progress and epoch lines: stderr
    summary = {k: res[k] for k in ("best_acc", "best_val_acc", "best_epoch", "out", "best")}
    print(json.dumps(summary) if show else
          f"best: epoch {summary['best_epoch']}, validation {100 * summary['best_val_acc']:.2f} %, "
          f"test {100 * summary['best_acc']:.2f} % -> {summary['best']}; last -> {summary['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
