"""Bundle a trained model with the package: a checkpoint stored in float16, checked unchanged.

    python -m icsnn_np.train --dataset cifar10 --model vgg_cpu --epochs 18 --lr 0.05 \
        --milestones 9 13 16 --seed 0 --out runs/vgg_cpu.npz          # ~40 min on 2 cores
    python -m icsnn_np.reproduce --checkpoint runs/vgg_cpu_best.npz --data-dir ../shared/data \
        --validation 1000 --p 0.995 0.999 0.9995 0.9999 1.0 --rows 0 1 3 --T 8 16 32 \
        --out results/p_validation --force                              # choose p
    python scripts/bundle_model.py runs/vgg_cpu_best.npz --data-dir ../shared/data --p 0.9995 \
        --p-chosen-by "lowest IC-SNN loss on 1,000 held-out training images (results/p_validation.md)" \
        --out icsnn_np/assets/vgg_cpu_cifar10.npz --force

writes ``--out`` (weights as float16, cast back to float32 on load) after measuring the
float32 and float16 networks on the full CIFAR-10 test set and on the bundled slice. The
default ``--out`` is ``runs/<arch>_cifar10.npz`` (not tracked); the bundled asset
``icsnn_np/assets/<arch>_cifar10.npz``, which ``demo --checkpoint <arch>`` and ``reproduce
--checkpoint <arch>`` find by name, is written only when named, and replaced only with
``--force``. Every weight must fit float16, checked before anything is written. It
refuses (exit 1) if float16 storage changes the test accuracy by more than ``--max-drop``
points. ``--p`` stores the threshold quantile chosen for this network on held-out training
images (``--p-chosen-by`` says by which validation; without it the header says p was given
by hand); the demo and ``reproduce`` use it unless given ``--p``. A QCFS model takes no
``--p`` (its thresholds are its trained λ). The header's ``test_acc`` is the float16
weights' accuracy on the CIFAR-10 test set, measured here (``test_acc_float32`` beside it).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.cli import common as cli  # noqa: E402
from icsnn_np.runs.checkpoints import load_model  # noqa: E402
from icsnn_np.io.checkpoint import (check_fits_data, resolve_checkpoint,  # noqa: E402
                                    save_checkpoint)
from icsnn_np.io.files import check_new_output  # noqa: E402
from icsnn_np.io.data import load_dataset  # noqa: E402
from icsnn_np.runs.training import evaluate  # noqa: E402


def main(argv=None):
    """The command line; returns 0, 1 when float16 changes the accuracy too much, 2 for bad
    input, 130 for Ctrl-C."""
    return cli.run(_main, argv, kept="nothing was written (the bundled file is replaced only at the end)")


def _main(argv):
    p = cli.ArgumentParser(prog="python scripts/bundle_model.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default=None, help="folder holding the CIFAR-10 test batch (the "
                   "training batches are not needed)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if it is missing")
    p.add_argument("--out", default=None, help="default: runs/<arch>_cifar10.npz (the package's "
                   "bundled models: icsnn_np/assets/<arch>_cifar10.npz)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--p", type=cli.quantile(), default=None,
                   help="threshold quantile to store with the model (the demo's default for it)")
    p.add_argument("--p-chosen-by", default=None, metavar="NOTE",
                   help="how --p was chosen: the validation that ran, its images and numbers "
                        "(e.g. 'lowest IC-SNN loss on 1,000 held-out training images, "
                        "results/p_validation.md'); without it the header says p was given by hand")
    p.add_argument("--max-drop", type=float, default=0.1, help="largest accuracy change allowed (points)")
    a = p.parse_args(argv)
    if not a.max_drop >= 0:
        raise ValueError(f"--max-drop must be >= 0 points, got {a.max_drop}")
    model, header = load_model(a.checkpoint)
    if a.p is not None and header.get("activation") == "qcfs":
        raise ValueError(f"{a.checkpoint} is a QCFS model (L = {header['levels']}): its thresholds "
                         f"are its trained λ, so a p would never be used; leave out --p")
    if a.p_chosen_by is not None and a.p is None:
        raise ValueError("--p-chosen-by describes how --p was chosen: give --p with it")
    a.out = a.out or f"runs/{header['arch']}_cifar10.npz"
    check_new_output(a.out, "--out", a.force)         # before any work: writable, not replacing
    mean, std = check_fits_data(header, 10, "CIFAR-10", a.checkpoint)
    check_float16(model, a.checkpoint)
    with cli.claim(a.out, cli.log_stderr):
        return _bundle(a, model, header, mean, std)


def check_float16(model, source):
    """Every weight fits float16 (|w| <= 65504): an overflow to inf would be refused only
    after the candidate was written, naming a file that no longer exists."""
    top = float(np.finfo(np.float16).max)     # a Python float: big is not cast to float16
    for name, a in model.state_dict().items():
        big = float(np.max(np.abs(np.asarray(a)))) if np.size(a) else 0.0
        if big > top:
            raise ValueError(f"{source}: tensor {name} has values up to {big:.4g}, beyond float16's "
                             f"range ({top:g}): it cannot be bundled as float16")


def _bundle(a, model, header, mean, std):
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(a.out).name}.", suffix=".candidate.npz",
                               dir=Path(a.out).parent)
    os.close(fd)
    tmp = Path(tmp)
    meta = {k: v for k, v in header.items() if k not in ("format", "version", "arch", "num_classes")}
    meta["train_config"] = {k: (Path(v).name if isinstance(v, str) and Path(v).is_absolute() else v)
                            for k, v in meta.get("train_config", {}).items()}   # no machine folders
    meta["stored_as"] = "float16"
    for k in ("p", "p_chosen_by"):             # the parent's p is not this bundle's choice
        meta.pop(k, None)
    if a.p is not None:                         # a validation is named only if one was given
        meta["p"] = float(a.p)
        meta["p_chosen_by"] = a.p_chosen_by or "given by hand to bundle_model.py (no validation recorded)"
    meta["made_by"] = (f"python scripts/bundle_model.py {Path(a.checkpoint).name}"
                       + (f" --p {a.p}" if a.p is not None else ""))
    try:
        full = load_dataset("cifar10", a.data_dir, download=a.download, test_only=True)  # tests only
        sl = load_dataset("cifar10-slice")
        save_checkpoint(tmp, model, header["arch"], header["num_classes"], meta, dtype=np.float16)
        half, _ = load_model(tmp)
        accs = {}
        for name, m in (("float32", model), ("float16", half)):
            accs[name] = (100 * evaluate(m, full.x_test, full.y_test, mean, std, np),
                          100 * evaluate(m, sl.x_test, sl.y_test, mean, std, np))
            print(f"{name}: CIFAR-10 test {accs[name][0]:.2f}%  bundled slice test {accs[name][1]:.2f}%")
        drop = abs(accs["float32"][0] - accs["float16"][0])
        if drop > a.max_drop:
            raise ValueError(f"float16 storage changes test accuracy by {drop:.2f} points (more "
                             f"than --max-drop {a.max_drop}): not bundled; raise --max-drop to bundle it")
        # the header's accuracy is that of the weights it holds: the float16 ones, as shipped
        meta.update(test_acc=round(accs["float16"][0] / 100, 6),
                    test_acc_float32=round(accs["float32"][0] / 100, 6))
        save_checkpoint(tmp, model, header["arch"], header["num_classes"], meta, dtype=np.float16)
        tmp.replace(a.out)                                        # atomic on one filesystem
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
