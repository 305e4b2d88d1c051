"""Convert a trained CIFAR network and compare SNN, I-SNN, C-SNN and IC-SNN.

By default it runs offline on what the package bundles: the CPU-sized VGG trained on CIFAR-10
and a real 1,000 + 1,000 image slice of CIFAR-10 (its training images balance thresholds and
run Alg. 2, its test images measure accuracy). The table (or --json) goes to stdout, progress
to stderr; --out also writes <out>.json and <out>.md, --export-snn the converted SNN.
The experiment itself is icsnn_np.runs.demo.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace

from ..backend import get_xp
from ..beyond.methods import METHODS
from ..init_mem import COMPENSATIONS, GRANULARITIES, READING, READINGS
from ..models import MODELS
from ..runs.demo import CALIB_SOURCES, DEFAULT_MODEL, DemoSetup, demo, on_the_spot, workdir_model
from ..runs.evaluate import ConversionConfig, format_accuracy_table
from ..runs.export import check_exportable, export_demo
from ..runs.provenance import provenance
from ..runs.stats import format_stats
from . import common as cli
from . import options

EXAMPLES = """\
  python -m icsnn_np.demo --T 32                              # the README's table: ~1-2 min
  python -m icsnn_np.demo --T 8 16 32 --n-test 200 --json     # ~30 s
  python -m icsnn_np.demo --variants ic-snn --T 8 --n-test 50 --export-snn runs/snn.npz   # ~10 s"""


def parser():
    p = options.parser("demo", __doc__, EXAMPLES)
    options.model_data(p, dataset="cifar10-slice", checkpoint=None)
    p.add_argument("--calib-from", default="train", choices=CALIB_SOURCES,
                   help="train: the training images of --dataset; cifar10-slice: the bundled slice's "
                        "(then --dataset cifar10 needs its test batch only)")
    options.conversion(p)
    p.add_argument("--channelwise", action="store_true", help="0.1's spelling of --thresholds channel")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"], help="input coding")
    p.add_argument("--reading", default=READING, choices=READINGS, help="Alg. 2 reading")
    p.add_argument("--granularity", default="layer", choices=GRANULARITIES, help="v(0) granularity")
    p.add_argument("--comp", default="literal", choices=COMPENSATIONS, help="coding compensation size")
    p.add_argument("--block", nargs="+", default=["node"], choices=["node", "paper"],
                   help="ResNets: own V_th and v(0) per IF node, or the paper's per block")
    options.running(p)
    p.add_argument("--model", default=None, type=cli.choice(sorted(MODELS), "model"),
                   help="the architecture trained on the spot when no model is bundled (vgg_cpu)")
    p.add_argument("--train-epochs", type=cli.count("--train-epochs"), default=30,
                   help="epochs when training on the spot")
    p.add_argument("--workdir", default=None, help="where an on-the-spot model is saved (runs)")
    p.add_argument("--stats", action="store_true",
                   help="also count spikes, synaptic operations and energy (per image) at each T")
    p.add_argument("--stats-variant", default="ic-snn", type=cli.choice(METHODS, "variant"),
                   help="the variant --stats measures")
    p.add_argument("--n-stats", type=cli.count("--n-stats"), default=200, help="images --stats runs on")
    p.add_argument("--export-snn", default=None, metavar="PATH",
                   help="write the converted SNN of the one variant and T run (docs/export.md)")
    options.outputs(p, what="<out>.json and <out>.md (default: none, the table goes to stdout)")
    return p


def parse_args(argv):
    a = parser().parse_args(argv)
    if len(a.p or ()) > 1 or len(a.thresholds) > 1 or len(a.block) > 1:
        raise ValueError("the demo runs one --p, --thresholds and --block (a sweep is reproduce's)")
    a.p, a.thresholds, a.block = (a.p or [None])[0], a.thresholds[0], a.block[0]
    return a


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv, kept="nothing was written (the demo prints its table at the end)")


def setup(a) -> DemoSetup:
    if a.channelwise:
        options.deprecated("--channelwise", "--thresholds channel")
        a.thresholds = "channel"
    cfg = ConversionConfig(T=tuple(a.T), variants=tuple(a.variants), p=a.p,
                           channelwise=a.thresholds == "channel", coding=a.coding, reading=a.reading,
                           granularity=a.granularity, comp=a.comp, block=a.block, n_calib=a.n_calib,
                           batch_size=a.batch_size, engine=a.engine, chunk=a.chunk, seed=a.seed,
                           threshold_search="mse" if a.thresholds == "mse" else "quantile",
                           prerun=a.prerun)
    replace(cfg, p=0.99 if a.p is None else a.p).validate()     # p: the model's, checked on load
    s = DemoSetup(cfg, a.checkpoint, a.model or DEFAULT_MODEL, a.dataset, a.data_dir, a.download,
                  a.calib_from, a.n_test, a.test_subset, a.backend, a.workdir or "runs",
                  a.train_epochs, a.stats_variant if a.stats else None, a.n_stats)
    if not on_the_spot(s) and a.model not in (None, a.checkpoint or DEFAULT_MODEL):   # not what runs
        raise ValueError(f"--model {a.model} is what the demo trains when no model is bundled; "
                         f"to run a model, name it: --checkpoint {a.model} or a checkpoint file")
    if not on_the_spot(s) and a.workdir:
        cli.log_stderr(f"note: --workdir {a.workdir} is not used: the model is "
                       f"{a.checkpoint or 'the bundled ' + DEFAULT_MODEL}, nothing is trained")
    if on_the_spot(s):
        cli.check_output_file(workdir_model(s), "--workdir: the on-the-spot model")
    if a.export_snn and (len(a.T) != 1 or len(a.variants) != 1):
        raise ValueError("--export-snn writes one SNN: name one variant and one T "
                         f"(--variants ic-snn --T 8), not {len(a.variants)} variants x {len(a.T)} T")
    if a.export_snn:
        check_exportable(a.variants[0])
        cli.check_output_file(a.export_snn, "--export-snn")
    if a.out:
        cli.check_outputs(a.out, a.log, exts=(".json", ".md"), force=a.force)
    return s


def _main(argv):
    a = parse_args(argv)                 # every name and count is checked here, before any work
    s = setup(a)
    command = cli.recorded_command("python -m icsnn_np.demo", argv)
    with cli.progress_log(a.log) as log:
        res, ctx = demo(s, log)
        res["provenance"] = provenance(command, get_xp(s.backend))
        text = table(res, s)
        if a.export_snn:
            export_demo(a.export_snn, ctx, a.variants[0], a.T[0], res["provenance"], log)
        if a.out:
            cli.write_outputs(a.out, {".json": json.dumps(res, indent=1).encode(), ".md": text.encode()})
            log(f"wrote {cli.with_ext(a.out, '.json')} and .md")
    print(json.dumps(res) if a.json else text)
    return 0


def table(res, s: DemoSetup) -> str:
    """The accuracy table and its footer (what ran, on which images, how long)."""
    lines = [format_accuracy_table(res)]
    for T, d in res.get("stats", {}).get("per_T", {}).items():
        lines += ["", f"{res['stats']['variant']}: " + format_stats(d)]
    c = res["config"]
    rule = c["threshold_rule"].split(":")[0]
    vth = "V_th = trained QCFS λ" if rule == "qcfs" else f"{rule} thresholds, p={c['p']}"
    lines.append(f"({res['backend']} backend, {c['coding']} coding, {vth}, Alg. 2 reading "
                 f"{c['reading']}/{c['granularity']}, compensation {c['comp']}; calibration: "
                 f"{res['images']['calibration']}; {res['seconds']:.0f}s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
