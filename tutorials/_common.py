"""What every tutorial shares: the command line, the data, the model, figures and results.

Each tutorial runs on its own: nothing here reads another tutorial's output, and the only
state is what a tutorial builds itself.

    run = setup("Step 4: threshold balancing")      # parses --quick/--class/--full, --out, --backend
    ds = load_slice()                               # the bundled real CIFAR-10 slice
    net = get_model(run, ds)                        # bundled model (full) or a tiny one (quick)
    calib, x_test, y_test = split_data(run, ds, net, n_calib=256, n_test=200)
    result("snn_acc_T32", 71.3)                     # prints "RESULT snn_acc_T32=71.3"
    see("accuracy recovers with T", acc64 > acc8)   # prints "SEE [yes] accuracy recovers ..."
    savefig(fig, run, "04_accuracy_vs_T.png")       # PNG into run.out (shown inline in a notebook)

Three modes (``run.pick(quick, full, in_class=...)`` picks a setting by mode):

* ``--quick``: a smoke test (seconds; what CI runs): a tiny network and few images check that
  the step runs and its code paths agree; its numbers need not show what the step teaches.
* ``--class``: about a minute on 2 CPU cores: the bundled model on the slice, at fewer T and
  settings than full mode, so that the effect the step teaches is visible in a lecture.
* full (the default, ``--full``): every setting; minutes per step.

Where figures go: quick and class mode write to a fresh temporary folder (or ``--out``) and
never to ``tutorials/figures/``; a full run refreshes the committed figures there.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:                                    # run from a checkout without `pip install -e .`
    import icsnn_np  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")                   # files only: the same in CI, a terminal and a notebook
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from icsnn_np.backend import get_xp, to_host  # noqa: E402
from icsnn_np.io.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from icsnn_np.runs.checkpoints import load_model  # noqa: E402
from icsnn_np.io.data import load_dataset  # noqa: E402
from icsnn_np.runs.evaluate import quantile_for  # noqa: E402
from icsnn_np.models import vgg  # noqa: E402
from icsnn_np.optim import SGD, cross_entropy, lr_at  # noqa: E402
from icsnn_np.io.preprocess import augment, batched, batches, channel_stats, normalize  # noqa: E402
from icsnn_np.runs.protocol import calibration_split  # noqa: E402
from icsnn_np.runs.training import evaluate  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURES = HERE / "figures"
BUNDLED_MODEL = HERE.parent / "icsnn_np" / "assets" / "vgg_cpu_cifar10.npz"
# The quick-mode network: three conv + ReLU layers (16, 32, 64 channels), each followed by a
# 2x2 average pool, and a linear readout: 33,834 parameters, ~14x cheaper than vgg_cpu.
# Trained once on the slice (`python tutorials/_common.py --make-tiny`) and kept here, so
# quick mode converts it at once instead of training it in every step.
TINY_CFG = [16, "A", 32, "A", 64, "A"]
TINY_MODEL = HERE / "assets" / "tiny_slice.npz"


BANNERS = {
    "quick": "# QUICK MODE IS A SMOKE TEST: a tiny network and few images check that the step runs; "
             "its numbers need not show what the step teaches (--class does, in about a minute)",
    "class": "# class mode: what the step teaches, on the bundled model where it needs one, with "
             "fewer T and settings than full mode (about a minute on 2 CPU cores); figures go to "
             "a temporary folder",
    "full": "# full mode: the bundled model, every setting (minutes); figures refresh "
            "tutorials/figures/ unless --out is given",
}
_FULL = object()          # pick's default for class mode: the full-mode value


@dataclass
class Run:
    """The settings of one tutorial run."""
    mode: str            # "quick" (tiny model, CI), "class" (about a minute) or "full"
    out: Path            # where figures go
    backend: str         # "numpy" or "cupy"
    xp: object           # the array module of that backend
    checkpoint: str | None = None
    t0: float = 0.0      # start time, for `finish`
    load0: float | None = None   # the machine's load at the start, for `finish`

    @property
    def quick(self) -> bool:
        """The tiny model and few images (the smoke test CI runs)."""
        return self.mode == "quick"

    def pick(self, quick, full, in_class=_FULL):
        """``quick`` in quick mode, ``in_class`` in class mode (default: ``full``), else ``full``."""
        if self.mode == "quick":
            return quick
        return full if self.mode == "full" or in_class is _FULL else in_class


def setup(description: str, argv=None, mode: str | None = None) -> Run:
    """Parse the tutorial's command line. A mode flag given there (--quick, --class, --full)
    wins; else ``mode`` (a notebook's ``MODE = ...`` line), else full mode. Unknown arguments
    (e.g. a Jupyter kernel's) are ignored."""
    p = argparse.ArgumentParser(description=description)
    flags = p.add_mutually_exclusive_group()
    flags.add_argument("--quick", action="store_true",
                      help="seconds, a smoke test: a tiny model, few images, small T (what CI "
                           "runs); figures go to a temporary folder unless --out is given")
    flags.add_argument("--class", dest="in_class", action="store_true",
                      help="about a minute: the bundled model at fewer T and settings, enough to "
                           "see the effect; figures go to a temporary folder unless --out is given")
    flags.add_argument("--full", action="store_true",
                      help="minutes: the bundled trained model (the default); figures refresh "
                           "tutorials/figures/ unless --out is given")
    p.add_argument("--out", default=None, help="folder for the figures")
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--checkpoint", default=None,
                   help="full mode: use this model (from `python -m icsnn_np.train`) instead")
    a, _ = p.parse_known_args(argv)
    mode = "quick" if a.quick else "class" if a.in_class else "full" if a.full else mode or "full"
    if mode not in BANNERS:
        raise SystemExit(f"MODE must be one of {', '.join(BANNERS)}, not {mode!r}")
    if a.out:
        out = Path(a.out)
    elif mode != "full":                    # never the committed figures
        out = Path(tempfile.mkdtemp(prefix=f"icsnn_tutorial_{mode}_"))
    else:
        out = FIGURES
    out.mkdir(parents=True, exist_ok=True)
    run = Run(mode=mode, out=out, backend=a.backend, xp=get_xp(a.backend),
              checkpoint=a.checkpoint, t0=time.perf_counter())
    print(f"# {description} -- {mode} mode, {a.backend} backend, figures -> {shown(out)}")
    print(BANNERS[mode])
    if mode == "class" and a.backend == "numpy":
        print(apply_threads(*choose_threads(usable_cores(), load_average(), os.environ)))
    run.load0 = load_average()
    return run


# --------------------------------------------------------------------------- threads, load
THREAD_VARS = ("ICSNN_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                            # macOS, Windows
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), None where there is none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):                 # Windows
        return None


def choose_threads(cores: int, load: float | None, env) -> tuple[int | None, str]:
    """Class mode's thread count: one per core it may use, never more than the cores the
    load leaves free (at least one), so that on a shared machine its threads do not queue
    behind other work and spin. A thread variable already set (``THREAD_VARS``) wins:
    (None, note). Returns (threads or None, the one-line note to print)."""
    mine = [f"{v}={env[v]}" for v in THREAD_VARS if env.get(v, "").strip()]
    if mine:
        return None, f"# threads: as set by {', '.join(mine)} (class mode chooses only when none is set)"
    free = cores if load is None else cores - int(round(load))
    n = max(1, min(cores, free))
    seen = "load unknown" if load is None else f"1-min load {load:.2f}, {max(free, 0)} free"
    return n, (f"# threads: {n} ({cores} cores usable, {seen}); to choose yourself, set "
               f"ICSNN_NUM_THREADS=N (or OPENBLAS_NUM_THREADS=N) before running")


def apply_threads(n: int | None, note: str) -> str:
    """Give the fast engine ``n`` workers and the BLAS ``n`` threads (None: leave both)."""
    if n is None:
        return note
    from icsnn_np.fast.blas import openblas  # noqa: PLC0415
    from icsnn_np.fast.threads import num_workers  # noqa: PLC0415
    os.environ["ICSNN_NUM_THREADS"] = str(n)           # read by the fast engine's workers
    num_workers.cache_clear()                          # in case something asked already
    lib = openblas()
    if lib is not None:
        lib.set_threads(n)                             # the teaching path's BLAS calls
    return note


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (tutorials/figures/...), else as is."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --------------------------------------------------------------------------- output
def result(name: str, value) -> None:
    """Print one key number as ``RESULT name=value`` (the tests parse these lines)."""
    if isinstance(value, (float, np.floating)):
        value = f"{float(value):.6g}"
    print(f"RESULT {name}={value}", flush=True)


def see(claim: str, holds, detail: str = "") -> bool:
    """Print one "what you should see" conclusion, checked against this run's numbers:
    ``SEE [yes] claim (detail)``, or ``SEE [NO]`` when this run does not show it."""
    holds = bool(holds)
    print(f"SEE [{'yes' if holds else 'NO'}] {claim}" + (f"  ({detail})" if detail else ""),
          flush=True)
    return holds


def solved(k: int, answer: str) -> None:
    """Print ``SOLVED k: answer`` after a solution's checks for exercise k passed."""
    print(f"SOLVED {k}: {answer}", flush=True)


def finish(run: Run) -> None:
    """Print the wall time of the run (the README's timings are these lines) and, beside
    it, the machine's load at start and end: a time on a busy machine says so."""
    load1 = load_average()
    load = "" if load1 is None or run.load0 is None else (
        f"; machine load {run.load0:.2f} -> {load1:.2f} (1-min average, {usable_cores()} cores)")
    print(f"done in {time.perf_counter() - run.t0:.1f} s ({run.mode} mode){load}")


def _show(path: Path) -> None:
    """In a notebook, show the saved file under the cell (figures are closed after saving)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display  # noqa: PLC0415 - only in a notebook
        display(Image(filename=str(path)))


def savefig(fig, run: Run, name: str) -> None:
    """Save ``fig`` as a PNG in the run's folder, close it, and say where it went."""
    path = run.out / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"FIGURE {shown(path)}", flush=True)
    _show(path)


def fig_to_array(fig) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 array (one frame of an animation)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_gif(frames, run: Run, name: str, ms_per_frame: int = 250) -> None:
    """Write RGB frames (H, W, 3) uint8 as a looping GIF with pillow."""
    from PIL import Image  # noqa: PLC0415 - pillow is a runtime dependency of the package

    # 64 colours: the images are 0/1 spikes and their averages; keeps the file small
    images = [Image.fromarray(f).quantize(colors=64, dither=Image.Dither.NONE) for f in frames]
    path = run.out / name
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    print(f"FIGURE {shown(path)}", flush=True)
    _show(path)


def binomial_se(acc_percent, n: int):
    """One standard error of an accuracy measured on n images, in points: sqrt(p(1-p)/n)."""
    p = np.asarray(acc_percent, dtype=np.float64) / 100.0
    return 100.0 * np.sqrt(p * (1.0 - p) / n)


def host(a):
    """Any array (NumPy, CuPy) or scalar as a float64 NumPy *copy*: for printing and plots
    (a copy, so that a record of ``node.v`` does not change with the next step)."""
    return np.array(to_host(a) if hasattr(a, "shape") else a, dtype=np.float64)


# --------------------------------------------------------------------------- data and model
def load_slice():
    """The bundled CIFAR-10 slice: 1,000 training and 1,000 test images, 100 per class."""
    return load_dataset("cifar10-slice")


@dataclass
class Net:
    """The ANN a tutorial converts, with what belongs to it."""
    model: object        # in eval mode, on run.xp
    mean: np.ndarray     # (3,) normalisation the model was trained with
    std: np.ndarray
    p: float             # threshold quantile: stored with the model, else the package default
    name: str


def train_tiny(ds, epochs: int = 30, lr: float = 0.02, seed: int = 0):
    """Train the TINY_CFG network on the slice; returns (model, mean, std).

    The recipe of ``icsnn_np.runs.training`` (SGD with momentum, weight decay, a step schedule, crop
    and flip) in a dozen lines. It steps through the fast engine's twins of the layers
    (``accelerate``: the same functions, tested equal, ~5x sooner on 2 cores); step 01 trains
    with the teaching layers themselves.
    """
    from icsnn_np.fast.layers import accelerate  # noqa: PLC0415
    from icsnn_np.fast.threads import hold_blas  # noqa: PLC0415

    mean, std = channel_stats(ds.x_train)
    model = vgg(TINY_CFG, num_classes=ds.num_classes, seed=seed)
    net, opt, rng = accelerate(model), SGD(model, lr=lr, momentum=0.9, weight_decay=5e-4), \
        np.random.default_rng(seed)
    t0 = time.perf_counter()
    with hold_blas():
        for epoch in range(epochs):
            opt.lr = lr_at(epoch, lr, milestones=(int(0.6 * epochs), int(0.85 * epochs)))
            net.train()
            for idx in batches(len(ds.x_train), 64, rng):
                xb = normalize(augment(ds.x_train[idx], rng), mean, std)   # float32 (64, 3, 32, 32)
                model.zero_grad()
                _, dlogits = cross_entropy(net.forward(xb), ds.y_train[idx])
                net.backward(dlogits)
                opt.step()
    acc = evaluate(model.eval(), ds.x_test, ds.y_test, mean, std, np)
    print(f"trained the tiny model ({model.num_parameters():,} parameters) for {epochs} epochs "
          f"in {time.perf_counter() - t0:.1f}s: {100 * acc:.1f}% on the slice's test images")
    return model, mean, std, acc


def make_tiny(path: Path = TINY_MODEL) -> Path:
    """Train the tiny model and store it where quick mode looks for it."""
    ds = load_slice()
    model, mean, std, acc = train_tiny(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model, "tiny", ds.num_classes, {
        "cfg": TINY_CFG, "dataset": "cifar10-slice", "mean": mean.tolist(), "std": std.tolist(),
        "test_acc": acc, "made_by": "python tutorials/_common.py --make-tiny"})


def get_model(run: Run, ds) -> Net:
    """The network to convert.

    Full mode: ``--checkpoint`` or the bundled ``vgg_cpu`` trained on all of CIFAR-10.
    Quick mode: the tiny model of ``tutorials/assets`` (trained on the slice; if the file is
    missing it is trained on the spot, ~1 minute). ``p`` is the quantile stored with the
    model (the bundled one carries 0.9995, chosen on held-out training images), else the
    package default 0.99 (``icsnn_np.runs.evaluate.quantile_for``).
    """
    path = Path(run.checkpoint) if run.checkpoint else BUNDLED_MODEL
    if not run.quick and path.is_file():
        model, header = load_model(path)
        print(f"model: {header['arch']} from {path.name}, {model.num_parameters():,} parameters, "
              f"test accuracy {100 * header.get('test_acc', float('nan')):.2f}% on "
              f"{header.get('dataset', '?')}")
    else:
        if not run.quick:
            print(f"NOTE: {path} not found; using the tiny quick-mode model instead "
                  f"(numbers will be far from the paper's)")
        if not TINY_MODEL.is_file():
            print(f"NOTE: {TINY_MODEL} not found; training it now")
            make_tiny()
        header, arrays = read_checkpoint(TINY_MODEL)
        model = vgg(header["cfg"], num_classes=header["num_classes"])
        model.load_state_dict(arrays)
        print(f"model: the tiny quick-mode network, {model.num_parameters():,} parameters, "
              f"{100 * header['test_acc']:.1f}% on the slice's test images")
    p = quantile_for(header)
    return Net(model.to(run.xp).eval(), np.asarray(header["mean"], np.float32),
               np.asarray(header["std"], np.float32), p, header["arch"])


def split_data(run: Run, ds, net: Net, n_calib: int, n_test: int, batch: int = 128):
    """Calibration batches and test images, as ``python -m icsnn_np.demo`` picks them.

    Calibration (threshold balancing, Alg. 2): a seeded sample of ``n_calib`` *training*
    images (``icsnn_np.runs.protocol.calibration_split``, seed 0), as a list of normalised
    batches (Alg. 2 iterates it more than once). Test: the first ``n_test`` test images.
    """
    cal, _ = calibration_split(len(ds.x_train), n_calib, seed=0)
    calib = batched(normalize(ds.x_train[cal], net.mean, net.std, run.xp), batch)
    x_test = normalize(ds.x_test[:n_test], net.mean, net.std, run.xp)
    return calib, x_test, ds.y_test[:n_test]


if __name__ == "__main__":
    if "--make-tiny" in sys.argv:
        print("wrote", make_tiny())
    else:
        print(__doc__)
