"""What every tutorial shares: the command line, the data, the model, figures and results.

Each tutorial runs on its own: nothing here reads another tutorial's output, and the only
state is what a tutorial builds itself.

    run = setup("Step 4: threshold balancing")      # parses --quick/--full, --out, --backend
    ds = load_slice()                               # the bundled real CIFAR-10 slice
    model, mean, std = get_model(run, ds)           # bundled model (full) or a tiny one (quick)
    result("snn_acc_T32", 71.3)                     # prints "RESULT snn_acc_T32=71.3"
    savefig(fig, run, "04_accuracy_vs_T.png")       # PNG into run.out
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:                                    # run from a checkout without `pip install -e .`
    import icsnn_np  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")                   # files only, no window: runs the same in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from icsnn_np.backend import get_xp, to_host  # noqa: E402
from icsnn_np.checkpoint import load_checkpoint  # noqa: E402
from icsnn_np.data import augment, batches, channel_stats, load_dataset, normalize  # noqa: E402
from icsnn_np.models import vgg  # noqa: E402
from icsnn_np.train import SGD, cross_entropy, evaluate, lr_at  # noqa: E402

HERE = Path(__file__).resolve().parent
BUNDLED_MODEL = HERE.parent / "icsnn_np" / "assets" / "vgg_cpu_cifar10.npz"
# The quick-mode network: three conv + ReLU layers (16, 32, 64 channels), each followed by a
# 2x2 average pool, and a linear readout. About 14x cheaper than vgg_cpu; ~38 % on the slice
# after 4 seconds of training.
TINY_CFG = [16, "A", 32, "A", 64, "A"]


@dataclass
class Run:
    """The settings of one tutorial run."""
    quick: bool          # small model, few images, small T (CI); False = the real thing
    out: Path            # where figures go
    backend: str         # "numpy" or "cupy"
    xp: object           # the array module of that backend
    checkpoint: str | None = None

    def pick(self, quick, full):
        """``quick`` in quick mode, ``full`` otherwise."""
        return quick if self.quick else full


def setup(description: str, argv=None) -> Run:
    """Parse the tutorial's command line. Unknown arguments (e.g. a Jupyter kernel's) are ignored."""
    p = argparse.ArgumentParser(description=description)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="seconds: a tiny model, few images, small T (what CI runs)")
    mode.add_argument("--full", action="store_true",
                      help="minutes: the bundled trained model (the default)")
    p.add_argument("--out", default=str(HERE / "figures"), help="folder for the PNG figures")
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--checkpoint", default=None,
                   help="full mode: use this model (from `python -m icsnn_np.train`) instead")
    a, _ = p.parse_known_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(quick=a.quick, out=out, backend=a.backend, xp=get_xp(a.backend),
              checkpoint=a.checkpoint)
    print(f"# {description} -- {'quick' if run.quick else 'full'} mode, {a.backend} backend, "
          f"figures -> {out}")
    return run


# --------------------------------------------------------------------------- output
def result(name: str, value) -> None:
    """Print one key number as ``RESULT name=value`` (the tests parse these lines)."""
    if isinstance(value, (float, np.floating)):
        value = f"{float(value):.6g}"
    print(f"RESULT {name}={value}", flush=True)


def savefig(fig, run: Run, name: str) -> Path:
    """Save ``fig`` as a PNG in the run's folder, close it, and say where it went."""
    path = run.out / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"FIGURE {path}", flush=True)
    return path


# --------------------------------------------------------------------------- data and model
def load_slice():
    """The bundled CIFAR-10 slice: 1,000 training and 1,000 test images, 100 per class."""
    return load_dataset("cifar10-slice")


def train_tiny(ds, epochs: int = 8, lr: float = 0.02, crop_flip: bool = False, seed: int = 0,
               xp=np):
    """Train the TINY_CFG network on the slice with the package's SGD; returns (model, mean, std).

    The same recipe as ``icsnn_np.train.train`` (SGD with momentum, weight decay, a step
    schedule), written out in ten lines so that a model exists after a few seconds.
    ``crop_flip`` turns on the paper's augmentation (worth it for longer runs only).
    """
    mean, std = channel_stats(ds.x_train)
    model = vgg(TINY_CFG, num_classes=ds.num_classes, seed=seed).to(xp)
    opt = SGD(model, lr=lr, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        opt.lr = lr_at(epoch, lr, milestones=(int(0.75 * epochs),))
        model.train()
        for idx in batches(len(ds.x_train), 64, rng):
            xb = ds.x_train[idx]                                   # uint8 (64, 3, 32, 32)
            xb = normalize(augment(xb, rng) if crop_flip else xb, mean, std, xp)
            model.zero_grad()
            _, dlogits = cross_entropy(model.forward(xb), xp.asarray(ds.y_train[idx]))
            model.backward(dlogits)
            opt.step()
    acc = evaluate(model, ds.x_test, ds.y_test, mean, std, xp)
    print(f"trained the tiny model ({model.num_parameters():,} parameters) for {epochs} epochs "
          f"in {time.perf_counter() - t0:.1f}s: {100 * acc:.1f}% on the slice's test images")
    return model.eval(), mean, std


def get_model(run: Run, ds):
    """The network to convert, as (model in eval mode on run.xp, mean, std).

    Full mode: ``--checkpoint`` or the bundled ``vgg_cpu`` trained on all of CIFAR-10; if
    neither exists yet, a tiny model trained a little longer. Quick mode: always the tiny
    model (a few seconds), so CI does not depend on the bundled file.
    """
    path = Path(run.checkpoint) if run.checkpoint else BUNDLED_MODEL
    if not run.quick and path.is_file():
        model, header = load_checkpoint(path)
        print(f"model: {header['arch']} from {path} (test accuracy "
              f"{100 * header.get('test_acc', float('nan')):.2f}% on {header.get('dataset', '?')})")
        return model.to(run.xp).eval(), np.asarray(header["mean"]), np.asarray(header["std"])
    if not run.quick:
        print(f"NOTE: {path} not found; using a tiny model trained on the slice instead "
              f"(numbers will be far from the paper's)")
    return train_tiny(ds, epochs=run.pick(8, 20), crop_flip=not run.quick, xp=run.xp)


def split(x, size):
    """A list of consecutive batches of ``x`` (Alg. 2 iterates its calibration set twice)."""
    return [x[i:i + size] for i in range(0, len(x), size)]


def host(a):
    """Any array (NumPy, CuPy) or scalar as a float64 NumPy array: for printing and plots."""
    return np.asarray(to_host(a) if hasattr(a, "shape") else a, dtype=np.float64)
