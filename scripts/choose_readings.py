"""Pick the default readings of Alg. 2/3 by measurement, on held-out *training* images.

DESIGN.md asks that the measurement, not taste, picks the default reading of each ambiguity.
Picking on the test set would tune on the numbers we then report, so this script measures
every reading on training images that threshold balancing and Alg. 2 do not use (the
calibration images are a seeded sample of the training set, the validation images a
disjoint sample from the same permutation). The network did see them in training, so its
ANN accuracy there is higher than on the test set; what is compared is the *loss* of each
SNN against the ANN on the same images.

    python scripts/choose_readings.py --checkpoint runs/vgg_cpu_best.npz --data-dir ../shared/data \
        --n-val 1000 --out results/readings_validation

writes ``<out>.md`` and ``<out>.json`` (the same row format as ``python -m icsnn_np.reproduce``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.checkpoint import atomic_write  # noqa: E402
from icsnn_np.evaluate import ConversionConfig, quantile_for  # noqa: E402
from icsnn_np.reproduce import ROWS, held_out_validation, markdown, run_rows  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-calib", type=int, default=256)
    p.add_argument("--T", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--p", type=float, default=None,
                   help="threshold quantile (default: the checkpoint's stored p, else 0.99)")
    p.add_argument("--out", default="results/readings_validation")
    a = p.parse_args(argv)
    model, header, x_calib, x_val, y_val = held_out_validation(
        a.checkpoint, a.data_dir, a.n_calib, a.n_val, a.seed)
    mean, std = header["mean"], header["std"]
    cfg = ConversionConfig(T=tuple(a.T), p=quantile_for(header, a.p), n_calib=a.n_calib, seed=a.seed, batch_size=250,
                           chunk=8).validate()
    res = run_rows(model, x_calib, x_val, y_val, cfg, a.T, a.T, ROWS, mean=mean,
                   std=std, log=lambda s: print(s, file=sys.stderr, flush=True))
    command = "python scripts/choose_readings.py " + " ".join(argv if argv is not None else sys.argv[1:])
    settings = {"model": header["arch"], "images": f"{a.n_val} held-out training images",
                "n_calib": a.n_calib, "seed": a.seed, "coding": "direct", "p": cfg.p}
    res.update(settings=settings, command=command)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out.with_suffix(".json"), lambda f: f.write(json.dumps(res, indent=1).encode()))
    md = markdown(res, {"title": f"{header['arch']}: readings of Alg. 2/3 on held-out training "
                                 f"images (validation, for choosing defaults)",
                        "data": f"{a.n_val} held-out CIFAR-10 training images (not used by "
                                f"threshold balancing or Alg. 2)",
                        "settings": settings, "command": command})
    atomic_write(out.with_suffix(".md"), lambda f: f.write(md.encode()))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
