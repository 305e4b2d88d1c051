"""Reproduce the paper's accuracy-loss tables (Tables 2-5) and Fig. 5 for a trained model:
SNN, I-SNN, C-SNN, IC-SNN at every --T, and one row per reading of the paper at --reading-T.
With the defaults (20 rows, T up to 128, 2,000 CIFAR-10 test images) it runs for about half
an hour to hours on 2 CPU cores; it prints its estimate before it starts.

Writes <out>.md (the paper's table format, loss = ANN - SNN in points), <out>.json, <out>.png
(accuracy vs T, as Fig. 5) and prints the Markdown (or --json) on stdout. Several values of
--p, --thresholds or --block run every combination (a sweep). Every measurement is kept in
<out>.partial.json as it is made: after Ctrl-C or a kill, the same command with --resume
measures only the rest. The experiment itself is icsnn_np.runs.reproduce.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..backend import get_xp
from ..io.checkpoint import check_fits_data, resolve_checkpoint
from ..io.data import load_dataset
from ..io.files import failed_write_note
from ..runs.checkpoints import load_model
from ..runs.evaluate import ConversionConfig, estimate, preflight, quantile_for, threshold_rule
from ..runs.interrupt import kept_on_interrupt
from ..runs.partial import Partial, file_sha256  # noqa: F401 - file_sha256: the tests'
from ..runs.protocol import evaluation_images
from ..runs.provenance import provenance
from ..runs.reproduce import MAIN_ROWS, ROWS, check_sweep, sweep
from ..runs.tables import markdown, plot
from . import common as cli
from . import options

EXAMPLES = """\
  python -m icsnn_np.reproduce --dataset cifar10-slice --n-test 100 --T 8 16 --rows 0 1 2 3   # ~20 s
  python -m icsnn_np.reproduce --checkpoint resnet20 --n-test 2000 \\
      --out results/resnet20_cifar10 --force          # a committed table: ~1 h, needs CIFAR-10
rows (--rows N, or --variants by name):
""" + "\n".join(f"  {i:2d}  {label}" for i, (label, _, _) in enumerate(ROWS))


def parser():
    p = options.parser("reproduce", __doc__, EXAMPLES)
    options.model_data(p, n_test=2000, validation=True)
    options.conversion(p, T=(8, 16, 32, 64, 128), variants=sorted({r[1] for r in ROWS}, key=str))
    p.add_argument("--rows", type=cli.count("--rows", minimum=0), nargs="+", default=None,
                   help="rows by number (listed below); instead of --variants")
    p.add_argument("--reading-T", type=cli.steps(), nargs="+", default=[8, 16, 32],
                   help="time steps of the rows that compare the paper's readings")
    p.add_argument("--block", nargs="+", default=["node"], choices=["node", "paper"],
                   help="ResNets: own V_th and v(0) per IF node (node) and/or the paper's one V_th "
                        "per block with v(0) on its first node (paper)")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"], help="input coding")
    p.add_argument("--reading", default=ConversionConfig.reading, choices=["raw", "remainder", "clip"],
                   help="Alg. 2 reading of the main I-SNN and IC-SNN rows")
    p.add_argument("--comp", default=ConversionConfig.comp, choices=["literal", "half"],
                   help="compensation of the main C-SNN and IC-SNN rows")
    options.running(p)
    options.outputs(p, resume=True, what="<out>.json, .md, .png (default runs/<checkpoint>_<dataset>)")
    return p


def parse_args(argv):
    a = parser().parse_args(argv)
    if a.rows and any(i >= len(ROWS) for i in a.rows):
        raise ValueError(f"--rows takes numbers 0..{len(ROWS) - 1} (listed in --help)")
    a.out = a.out or (f"runs/{Path(a.checkpoint).stem}_{a.dataset}" + ("_validation" if a.validation else ""))
    cli.check_resumable(a.out, a.log, a.force, a.resume)
    return a


def fingerprint(a) -> dict:
    """What decides the numbers (not where they are written or logged), the checkpoint by its
    content: a resumed run must match it (runs/partial.py)."""
    return {k: v for k, v in vars(a).items() if k not in
            ("out", "log", "resume", "data_dir", "download", "checkpoint", "force", "json")}


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv)


def _main(argv):
    a = parse_args(argv)
    path = resolve_checkpoint(a.checkpoint)
    a.checkpoint_sha256 = file_sha256(path)                    # the checkpoint by its content
    with cli.progress_log(a.log) as log, cli.claim(a.out, log):
        memo = Partial(cli.with_ext(a.out, ".partial.json"), fingerprint(a), resume=a.resume,
                       n_images=a.validation or a.n_test, labels={r[0] for r in ROWS})
        kept = lambda: f"no table was written; {memo.kept()}" + (  # noqa: E731
            f"; the progress so far is in {a.log}" if a.log else "")
        with kept_on_interrupt(kept):
            if len(memo):
                log(f"resuming: {len(memo)} measurements from {memo.path}")
            with failed_write_note(memo.kept):             # the measurements are kept
                rc = _reproduce(a, argv, path, log, memo)
        memo.finish()
    return rc


def _reproduce(a, argv, path, log, memo):
    xp = get_xp(a.backend)
    model, header = load_model(path)
    model.to(xp)
    ds = load_dataset(a.dataset, a.data_dir, download=a.download)
    mean, std = check_fits_data(header, ds.num_classes, a.dataset, str(path))
    ps = a.p or [quantile_for(header)]
    base = ConversionConfig(T=tuple(a.T), p=ps[0], coding=a.coding, n_calib=a.n_calib, seed=a.seed,
                            engine=a.engine, chunk=a.chunk, batch_size=a.batch_size, comp=a.comp,
                            reading=a.reading, prerun=a.prerun).validate()
    x_calib, x_eval, y_eval, data = evaluation_images(ds, mean, std, xp, a.n_calib, a.seed,
                                                      a.n_test, a.test_subset, a.validation or 0)
    preflight(model, x_eval, base, Ts=list(a.T) + list(a.reading_T))
    rows = [ROWS[i] for i in a.rows] if a.rows else [r for r in ROWS if r[1] in a.variants]
    check_sweep(model, x_calib, base, ps, a.thresholds, a.block, sorted(set(a.T) | set(a.reading_T)))
    combos = len(ps) * len(a.thresholds) * len(a.block)
    steps = sum(sum(a.T) if r in ROWS[:MAIN_ROWS] else sum(a.reading_T) for r in rows)
    log(f"reproducing on {header['arch']} ({a.checkpoint}): {data}, {a.n_calib} calibration images, "
        f"T={a.T}, reading rows at T={a.reading_T}; "
        + estimate(model, x_eval, base, len(x_eval) * steps * combos))
    res = sweep(model, x_calib, x_eval, y_eval, base, ps, a.thresholds, a.block, a.T, a.reading_T,
                rows, mean, std, log, memo)
    command = cli.recorded_command("python -m icsnn_np.reproduce", argv)
    settings = {"model": header["arch"], "checkpoint": Path(a.checkpoint).name, "images": data,
                "n_calib": a.n_calib, "seed": a.seed, "coding": a.coding, "p": "/".join(map(str, ps)),
                "thresholds": "/".join(a.thresholds),
                "threshold_rule": threshold_rule(a.thresholds, model), "default reading": base.reading,
                "default granularity": base.granularity, "default compensation": base.comp,
                "block treatment": "/".join(a.block), "engine": a.engine, "backend": a.backend}
    res.update(settings=settings, command=command, arch=header["arch"],
               checkpoint_sha256=a.checkpoint_sha256, provenance=provenance(command, xp))
    title = f"{header['arch']} on CIFAR-10: ANN vs converted SNNs" + (" (validation)" if a.validation else "")
    meta = {"title": title, "settings": settings, "command": command, "data": data, "arch": header["arch"]}
    text = markdown(res, meta)
    cli.write_outputs(a.out, {".json": json.dumps(res, indent=1).encode(), ".md": text.encode(),
                              ".png": plot(res, None, title)})
    log(f"wrote {cli.with_ext(a.out, '.md')}, .json, .png")
    print(json.dumps(res) if a.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
