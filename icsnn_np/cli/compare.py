"""Compare IC-SNN with the training-free methods of its family (SNN Calibration, COS, SRP) on
the same network, images and total time steps. With the defaults it runs for about an hour
on 2 CPU cores (11 methods x 2 threshold rules x 4 T on 2,000 images); it prints its estimate
before it starts.

Writes <out>.md (loss by counted T; at equal total steps, pre-run included; the winner at each
total against the noise), <out>.json and <out>.png; prints the Markdown (or --json) on stdout.
The experiment itself is icsnn_np.runs.compare (tutorial 8 calls it too).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..backend import get_xp
from ..io.data import load_dataset
from ..io.files import failed_write_note
from ..io.checkpoint import check_fits_data, resolve_checkpoint
from ..runs.checkpoints import load_model
from ..runs.compare import ROWS, markdown, plot, run_methods
from ..runs.evaluate import CALIB_RECIPES, ConversionConfig, estimate, preflight, quantile_for, threshold_rule
from ..runs.interrupt import kept_on_interrupt
from ..runs.partial import Partial, file_sha256
from ..runs.protocol import evaluation_images
from ..runs.provenance import provenance
from . import common as cli
from . import options

EXAMPLES = """\
  python -m icsnn_np.compare --checkpoint vgg_cpu --dataset cifar10-slice --n-test 50 --T 8 \\
      --variants snn ic-snn cos-layer --thresholds layer                              # ~10 s
  python -m icsnn_np.compare --checkpoint vgg_cpu --n-test 2000 --T 4 8 16 32 \\
      --out results/methods_vgg_cpu                 # the committed table: ~1 h, needs CIFAR-10"""


def parser():
    p = options.parser("compare", __doc__, EXAMPLES)
    options.model_data(p, n_test=2000, validation=True)
    options.conversion(p, T=(4, 8, 16, 32), thresholds=("layer", "mse"), variants=[r[1] for r in ROWS])
    p.add_argument("--calib-recipe", default="ours", choices=CALIB_RECIPES,
                   help="SNN Calibration rows: ours (every row's thresholds and images) or official "
                        "(MSE thresholds, 128 augmented training images, as its code pairs them)")
    p.add_argument("--no-match-total", action="store_true",
                   help="do not also run COS/SRP at T = S - prerun (equal total steps)")
    options.running(p)
    options.outputs(p, resume=True, what="<out>.json, .md, .png (default runs/methods_<model>)")
    return p


def parse_args(argv):
    a = parser().parse_args(argv)
    a.out = a.out or f"runs/methods_{Path(a.checkpoint).stem.removesuffix('_cifar10')}"
    if len(a.p or ()) > 1:
        raise ValueError("compare runs one --p (a sweep of p is reproduce's)")
    cli.check_resumable(a.out, a.log, a.force, a.resume)
    return a


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv)


def _main(argv):
    a = parse_args(argv)
    with cli.progress_log(a.log) as log, cli.claim(a.out, log):
        fingerprint = {k: v for k, v in vars(a).items()
                       if k not in ("out", "log", "resume", "data_dir", "download", "force", "json")}
        memo = Partial(cli.with_ext(a.out, ".partial.json"), fingerprint, resume=a.resume,
                       n_images=a.validation or a.n_test, labels={r[0] for r in ROWS})
        with kept_on_interrupt(lambda: f"no table was written; {memo.kept()}"):
            with failed_write_note(memo.kept):             # the measurements are kept
                rc = _compare(a, argv, log, memo)
        memo.finish()
    return rc


def _compare(a, argv, log, memo):
    xp = get_xp(a.backend)
    model, header = load_model(a.checkpoint)
    model.to(xp)
    ds = load_dataset(a.dataset, a.data_dir, download=a.download)
    mean, std = check_fits_data(header, ds.num_classes, a.dataset, a.checkpoint)
    base = ConversionConfig(T=tuple(a.T), p=quantile_for(header, (a.p or [None])[0]),
                            n_calib=a.n_calib, seed=a.seed, engine=a.engine, chunk=a.chunk,
                            batch_size=a.batch_size, prerun=a.prerun,
                            calib_recipe=a.calib_recipe).validate()
    x_calib, x_eval, y_eval, data = evaluation_images(ds, mean, std, xp, a.n_calib, a.seed,
                                                      a.n_test, a.test_subset, a.validation or 0)
    rows = [r for r in ROWS if r[1] in a.variants]
    preflight(model, x_eval, base, Ts=[t + a.prerun for t in a.T])
    searches = ["quantile" if t == "layer" else t for t in a.thresholds]
    log(f"comparing on {header['arch']} ({a.checkpoint}): {data}, {a.n_calib} calibration images, "
        f"T={a.T}, thresholds {a.thresholds}, pre-run {a.prerun}; "
        + estimate(model, x_eval, base, len(x_eval) * sum(a.T) * len(rows) * len(searches)))
    res = run_methods(model, x_calib, x_eval, y_eval, base, sorted(a.T), searches, rows,
                      mean, std, log, match_total=not a.no_match_total, memo=memo)
    command = cli.recorded_command("python -m icsnn_np.compare", argv)
    settings = {"model": header["arch"], "checkpoint": Path(a.checkpoint).name, "images": data,
                "n_calib": a.n_calib, "seed": a.seed, "coding": "direct", "p": base.p,
                "threshold_rule": threshold_rule(a.thresholds, model),
                "default reading": base.reading, "default compensation": base.comp,
                "pre-run steps": a.prerun, "engine": a.engine, "backend": a.backend,
                "SNN Calibration recipe": a.calib_recipe}
    res.update(settings=settings, command=command, arch=header["arch"],
               checkpoint_sha256=file_sha256(resolve_checkpoint(a.checkpoint)),
               provenance=provenance(command, xp))
    meta = {"title": f"{header['arch']}: IC-SNN beside the training-free methods of its family",
            "settings": settings, "command": command, "data": data}
    text = markdown(res, meta)
    cli.write_outputs(a.out, {".json": json.dumps(res, indent=1).encode(), ".md": text.encode(),
                              ".png": plot(res, None, f"{header['arch']} ({data.split(' test')[0]})")})
    log(f"wrote {cli.with_ext(a.out, '.md')}, .json, .png")
    print(json.dumps(res) if a.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
