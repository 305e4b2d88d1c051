"""Pick the threshold quantile p (and layer- vs channel-wise thresholds) on held-out *training* images.

The threshold V_th of each layer is the p-quantile of its ANN activations on the
calibration images (threshold balancing). p trades clipping (p too low: large activations
are cut at V_th) against resolution (p too high: V_th/T is a coarse step). The paper does
not give p; its IC-SNN numbers rely on a good one. Choosing it on the test set would tune on
the numbers we report, so, like scripts/choose_readings.py, this measures on training images
that threshold balancing and Alg. 2 do not use, and compares the *loss* against the ANN on
the same images.

    python scripts/choose_p.py --checkpoint runs/vgg_cpu_best.npz --data-dir ../shared/data \
        --p 0.99 0.995 0.999 0.9995 0.9999 1.0 --out results/p_validation

writes ``<out>.md`` and ``<out>.json``: one row per (p, thresholds, variant), and the p that
minimises IC-SNN's summed loss over the T list.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.checkpoint import atomic_write  # noqa: E402
from icsnn_np.evaluate import ConversionConfig  # noqa: E402
from icsnn_np.reproduce import ROWS, held_out_validation, run_rows  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--p", type=float, nargs="+", default=[0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0])
    ap.add_argument("--thresholds", nargs="+", default=["layer"], choices=["layer", "channel"])
    ap.add_argument("--rows", type=int, nargs="+", default=[0, 1, 3],
                    help="indices into icsnn_np.reproduce.ROWS (default SNN, I-SNN, IC-SNN)")
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-calib", type=int, default=256)
    ap.add_argument("--T", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/p_validation")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    model, header, x_calib, x_val, y_val = held_out_validation(
        a.checkpoint, a.data_dir, a.n_calib, a.n_val, a.seed)
    mean, std = header["mean"], header["std"]
    rows = [ROWS[i] for i in a.rows]
    found, ann = [], None
    for thr in a.thresholds:
        for p in a.p:
            cfg = ConversionConfig(T=tuple(a.T), p=p, channelwise=thr == "channel",
                                   n_calib=a.n_calib, seed=a.seed, batch_size=250,
                                   chunk=8).validate()
            res = run_rows(model, x_calib, x_val, y_val, cfg, a.T, a.T, rows,
                           mean=mean, std=std, log=lambda s: print(s, file=sys.stderr, flush=True))
            ann = res["ann_acc"]
            for r in res["rows"]:
                found.append({"p": p, "thresholds": thr, "label": r["label"],
                              "loss": {t: v["loss"] for t, v in r["T"].items()}})
            print(f"[{time.strftime('%H:%M:%S')}] p={p} {thr}: "
                  + "; ".join(f"{f['label']} " + "/".join(f"{v:.2f}" for v in f["loss"].values())
                              for f in found[-len(rows):]), file=sys.stderr, flush=True)
    ic = [f for f in found if f["label"] == "IC-SNN"]
    best = min(ic, key=lambda f: sum(f["loss"].values())) if ic else None
    command = "python scripts/choose_p.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"ann_acc": ann, "n_val": a.n_val, "n_calib": a.n_calib, "seed": a.seed, "T": a.T,
           "rows": found, "best_ic_snn": best, "command": command,
           "seconds": round(time.perf_counter() - t0, 1)}
    Ts = [str(t) for t in a.T]
    lines = [f"# {header['arch']}: threshold quantile p on held-out training images", "",
             f"ANN accuracy {ann:.2f}% on {a.n_val} held-out CIFAR-10 training images (not used "
             f"by threshold balancing or Alg. 2); {a.n_calib} calibration images, seed {a.seed}, "
             "direct coding, default readings (Alg. 2 remainder, compensation literal). "
             "Loss = ANN_ACC - SNN_ACC in points.", "",
             "| p | thresholds | Method | " + " | ".join(f"T{t}-L" for t in Ts) + " |",
             "|---|---|---|" + "---|" * len(Ts)]
    for f in found:
        lines.append(f"| {f['p']} | {f['thresholds']} | {f['label']} | "
                     + " | ".join(f"{f['loss'][t]:.2f}" for t in Ts) + " |")
    if best:
        lines += ["", f"Lowest summed IC-SNN loss: p = {best['p']}, {best['thresholds']}-wise "
                      "thresholds (" + " / ".join(f"{best['loss'][t]:.2f}" for t in Ts) + ")."]
    lines += ["", f"Command: `{command}`", "", f"Wall time: {out['seconds'] / 60:.1f} min.", ""]
    md = "\n".join(lines)
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path.with_suffix(".json"), lambda fh: fh.write(json.dumps(out, indent=1).encode()))
    atomic_write(path.with_suffix(".md"), lambda fh: fh.write(md.encode()))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
