"""How often do two float32 simulations of the same SNN disagree on a prediction?

The benchmark (``python -m icsnn_np.bench``) checks that the engine and a step-by-step
PyTorch simulation predict the same classes on its batch. Both are float32, with different
summation orders (and the engine's Winograd convolutions round differently again): a
membrane potential that lands within rounding of the threshold can spike in one and not
the other, and an image whose top two outputs are that close can change its answer. This
script repeats the check over several weight seeds of the benchmark network, for the
engine's default convolutions (Winograd) and for im2col + GEMM, so the benchmark's single
number can be read against the spread.

    python scripts/agreement_seeds.py --seeds 8 --out results/agreement_seeds

needs PyTorch (the reference); writes ``<out>.md`` and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.bench import BenchConfig, _data, torch_snn  # noqa: E402
from icsnn_np.checkpoint import atomic_write  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.layers import Conv2d  # noqa: E402
from icsnn_np.models import build_model  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402
from icsnn_np.threads import blas_thread_count  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", default="results/agreement_seeds")
    a = ap.parse_args(argv)
    import torch  # noqa: PLC0415 - the reference, never a package dependency
    torch.set_num_threads(blas_thread_count() or 1)
    cfg = BenchConfig()
    x_cal, x, _, _, source = _data(cfg, np)
    rows, t0 = [], time.perf_counter()
    for seed in range(a.seeds):
        model = build_model(cfg.model, seed=seed)
        snn = convert(model)
        balance_thresholds(snn, model, [x_cal[i:i + 64] for i in range(0, len(x_cal), 64)], p=0.99)
        ref = torch_snn(torch, snn, "cpu")(torch.as_tensor(x), cfg.T).numpy()
        top2 = np.sort(ref, axis=1)[:, -2:]
        row = {"seed": seed, "smallest_top2_margin": float((top2[:, 1] - top2[:, 0]).min())}
        for algo in ("auto", "im2col"):
            for m in snn.flat:
                if isinstance(m, Conv2d):
                    m.algo = algo
            out = np.asarray(simulate(snn, x, cfg.T, chunk=cfg.chunk).output)
            row[algo] = int((out.argmax(1) != ref.argmax(1)).sum())
        rows.append(row)
        print(f"seed {seed}: images that disagree with PyTorch: Winograd {row['auto']}, "
              f"im2col {row['im2col']} of {len(x)}", file=sys.stderr, flush=True)
    n = len(x)
    lines = ["# Engine vs PyTorch step-by-step: disagreements over weight seeds", "",
             f"Benchmark network `{cfg.model}`, {n} images ({source}), T = {cfg.T}, direct coding, "
             "thresholds p = 0.99 on 128 training images; weights: He initialisation with the "
             "seed below (untrained, so many images sit near a tie). Counted: images whose "
             "predicted class differs from PyTorch's.", "",
             "| weight seed | Winograd convs (default) | im2col convs | smallest top-2 gap (PyTorch) |",
             "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['auto']} / {n} | {r['im2col']} / {n} | {r['smallest_top2_margin']:.2e} |")
    tot_w, tot_i = sum(r["auto"] for r in rows), sum(r["im2col"] for r in rows)
    lines += [f"| all | {tot_w} / {n * len(rows)} | {tot_i} / {n * len(rows)} | |", "",
              f"Command: `python scripts/agreement_seeds.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
              f" ({time.perf_counter() - t0:.0f} s)", ""]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out.with_suffix(".json"), lambda f: f.write(json.dumps(rows, indent=1).encode()))
    atomic_write(out.with_suffix(".md"), lambda f: f.write("\n".join(lines).encode()))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
