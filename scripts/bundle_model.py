"""Make the demo's bundled model: a trained checkpoint stored in float16, checked unchanged.

    python -m icsnn_np.train --dataset cifar10 --model vgg_cpu --epochs 18 --lr 0.05 \
        --milestones 9 13 16 --seed 0 --out runs/vgg_cpu.npz          # ~40 min on 2 cores
    python scripts/choose_p.py --checkpoint runs/vgg_cpu_best.npz --data-dir ../shared/data
    python scripts/bundle_model.py runs/vgg_cpu_best.npz --data-dir ../shared/data --p 0.9995

writes ``icsnn_np/assets/vgg_cpu_cifar10.npz`` (weights as float16, cast back to float32 on
load) after measuring the float32 and float16 networks on the full CIFAR-10 test set and on
the bundled slice; it refuses (exit 1) if float16 storage changes the test accuracy by more
than ``--max-drop`` points. ``--p`` stores the threshold quantile chosen for this network on
held-out training images; the demo and ``reproduce`` use it unless given ``--p``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from icsnn_np.data import load_dataset  # noqa: E402
from icsnn_np.train import evaluate  # noqa: E402

ASSET = Path(__file__).resolve().parents[1] / "icsnn_np" / "assets" / "vgg_cpu_cifar10.npz"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(ASSET))
    p.add_argument("--p", type=float, default=None,
                   help="threshold quantile to store with the model (the demo's default for it)")
    p.add_argument("--p-chosen-by", default="scripts/choose_p.py: lowest IC-SNN loss on 1,000 "
                   "held-out training images (results/p_validation.md)")
    p.add_argument("--max-drop", type=float, default=0.1, help="largest accuracy change allowed (points)")
    a = p.parse_args(argv)
    model, header = load_checkpoint(a.checkpoint)
    mean, std = header["mean"], header["std"]
    tmp = Path(a.out).with_name(".candidate_" + Path(a.out).name)
    meta = {k: v for k, v in header.items() if k not in ("format", "version", "arch", "num_classes")}
    meta["stored_as"] = "float16"
    if a.p is not None:
        if not 0.0 < a.p <= 1.0:
            p.error(f"--p must lie in (0, 1], got {a.p}")
        meta["p"], meta["p_chosen_by"] = float(a.p), a.p_chosen_by
    meta["made_by"] = (f"python scripts/bundle_model.py {Path(a.checkpoint).name}"
                       + (f" --p {a.p}" if a.p is not None else ""))
    full = load_dataset("cifar10", a.data_dir)
    sl = load_dataset("cifar10-slice")
    save_checkpoint(tmp, model, header["arch"], header["num_classes"], meta, dtype=np.float16)
    try:
        half, _ = load_checkpoint(tmp)
        accs = {}
        for name, m in (("float32", model), ("float16", half)):
            accs[name] = (100 * evaluate(m, full.x_test, full.y_test, mean, std, np),
                          100 * evaluate(m, sl.x_test, sl.y_test, mean, std, np))
            print(f"{name}: CIFAR-10 test {accs[name][0]:.2f}%  bundled slice test {accs[name][1]:.2f}%")
        drop = abs(accs["float32"][0] - accs["float16"][0])
        if drop > a.max_drop:
            print(f"float16 storage changes test accuracy by {drop:.2f} points: not bundled")
            return 1
        tmp.replace(a.out)                                        # atomic on one filesystem
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
