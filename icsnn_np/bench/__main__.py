"""Benchmark the fast engine against PyTorch (where installed): SNN inference, a training step,
the convolution GEMMs against a plain matmul, T scaling; print the tables, write JSON + Markdown.
The defaults take about four minutes on 2 CPU cores.

    python -m icsnn_np.bench --out results/bench --force     # the committed table
    python -m icsnn_np.bench                       # runs/bench.{json,md} (not tracked)
    python -m icsnn_np.bench --quick               # seconds; writes to a temporary folder
    python -m icsnn_np.bench --agreement-seeds 8   # runs/agreement_seeds.{json,md}; needs PyTorch

``--out STEM`` writes ``STEM.json`` (the results) and ``STEM.md`` (the tables); an ``--out``
ending in ``.json`` or ``.md`` is taken as its stem, with a note. ``--md`` names the Markdown
file elsewhere; two outputs naming one file are refused. An existing output is replaced only
with ``--force``; progress and the paths written go to stderr, the table to stdout.

OpenBLAS picks its kernels (its "core type") when it loads, from the CPU or from the
variable ``OPENBLAS_CORETYPE``. Some machines pin it: the ones our numbers come from set
``OPENBLAS_CORETYPE=Haswell`` (AVX2), which halves every NumPy matrix product on their
AVX-512 CPU, while PyTorch's own kernels use AVX-512 regardless. ``--blas-core NAME``
(e.g. ``SkylakeX``) re-runs the command in a new process with that variable set; the kernels
in use are recorded in the JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..cli import common as cli
from ..cli import options
from ..runs.provenance import provenance
from ..io.files import atomic_write_all
from ..backend import get_xp
from .parts import BenchConfig, agreement_seeds, run
from .report import agreement_md, machine_md, table


def _write(json_path: Path, md_path: Path, res, md: str):
    atomic_write_all({json_path: (json.dumps(res, indent=1, default=float) + "\n").encode(),
                      md_path: md.encode()})


def output_paths(out, md, quick, agreement):
    """(stem, JSON path, Markdown path, note or None) of ``--out``/``--md``: the JSON is always
    STEM.json and the Markdown STEM.md (or ``--md``); a stem given as ``X.json`` or ``X.md``
    is taken as X, with a note to print. Two outputs naming one file are refused."""
    if out is None:
        folder = Path(tempfile.mkdtemp(prefix="icsnn_bench_")) if quick else Path("runs")
        stem = folder / ("agreement_seeds" if agreement else "bench")
    else:
        stem = Path(out)
        if stem.is_dir():
            raise ValueError(f"--out {out} is an existing folder; name a stem (--out {stem / 'bench'} "
                             f"writes {stem / 'bench.json'} and {stem / 'bench.md'})")
        if stem.suffix.lower() in (".json", ".md"):
            stem = stem.with_suffix("")
    json_path, md_path = cli.with_ext(stem, ".json"), (Path(md) if md else cli.with_ext(stem, ".md"))
    if json_path.resolve() == md_path.resolve():
        raise ValueError(f"--md {md} names the JSON output {json_path} too: the results and the "
                         f"tables need two files (leave out --md to write {stem}.md)")
    note = (f"note: --out {out} is taken as the stem {stem}: writing {json_path} and {md_path}"
            if out is not None and Path(out) != stem else None)
    return stem, json_path, md_path, note


def main(argv=None):
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv, kept="nothing was written (the results are written at the end)")


EXAMPLES = """\
  python -m icsnn_np.bench --quick --no-torch --out runs/b       # ~20 s: runs/b.json, runs/b.md
  python -m icsnn_np.bench --only snn train --repeats 3          # ~3 min, against PyTorch
  python -m icsnn_np.bench --out results/bench --force           # the committed table: ~4 min"""


def parser():
    p = options.parser("bench", __doc__, EXAMPLES)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (a smoke run of seconds); writes to a temporary folder unless --out")
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"], help="array library")
    p.add_argument("--out", default=None, metavar="STEM",
                   help="writes STEM.json and STEM.md (default runs/bench; --quick: a temporary "
                        "folder); a name ending in .json or .md is taken as its stem")
    p.add_argument("--force", action="store_true", help="replace the outputs if they exist")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    p.add_argument("--md", default=None, help="markdown tables elsewhere (default: STEM.md)")
    p.add_argument("--repeats", type=cli.count("--repeats"), default=None,
                   help="timed calls after the warm-up (default: the size's own)")
    p.add_argument("--chunk", type=cli.count("--chunk"), default=None, help="time steps per engine chunk (default: the engine's)")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch columns (default: they run where PyTorch is installed)")
    p.add_argument("--only", nargs="+", default=["snn", "gemm", "train", "T"],
                   choices=["snn", "gemm", "train", "T"], help="parts to run (snn always runs)")
    p.add_argument("--agreement-seeds", type=cli.count("--agreement-seeds"), default=None, metavar="N",
                   help="instead: count prediction disagreements with PyTorch over N weight seeds")
    p.add_argument("--blas-core", default=None, metavar="NAME",
                   help="re-run with OPENBLAS_CORETYPE=NAME (e.g. SkylakeX)")
    return p


def _main(argv):
    a = parser().parse_args(argv)
    if a.agreement_seeds and not a.torch:
        raise ValueError("--agreement-seeds compares with PyTorch: not with --no-torch")
    if a.agreement_seeds:
        try:                    # installed is not enough: a broken install fails on import
            import torch  # noqa: F401,PLC0415
        except ImportError as e:
            raise ValueError(f"--agreement-seeds compares with PyTorch, which does not import "
                             f"here ({e}): pip install torch") from None
    if a.blas_core and os.environ.get("OPENBLAS_CORETYPE") != a.blas_core:
        # OpenBLAS chose its kernels when NumPy loaded: only a new process can change them
        env = dict(os.environ, OPENBLAS_CORETYPE=a.blas_core)
        return subprocess.run([sys.executable, "-m", "icsnn_np.bench", *argv], env=env).returncode
    cfg = (BenchConfig.quick_sizes if a.quick else BenchConfig)(backend=a.backend, torch=a.torch)
    if a.repeats is not None:
        cfg.repeats = a.repeats
    if a.chunk is not None:
        cfg.chunk = a.chunk
    stem, out, md_path, note = output_paths(a.out, a.md, a.quick, a.agreement_seeds)
    cli.check_new_output(out, "--out", a.force)        # before any work: writable, not replacing
    cli.check_new_output(md_path, "--md" if a.md else "--out", a.force)
    if note:                                           # after the checks: a refusal is one line
        cli.log_stderr(note)
    with cli.claim(stem, cli.log_stderr):
        return _bench(a, cfg, out, md_path, "python -m icsnn_np.bench " + " ".join(argv))


def _bench(a, cfg, out, md_path, command):
    t0 = time.perf_counter()
    if a.agreement_seeds:
        res = agreement_seeds(cfg, a.agreement_seeds, log=cli.log_stderr)
        text = agreement_md(res, command.strip(), time.perf_counter() - t0)
        _write(out, md_path, res, text)
        print(text)
        cli.log_stderr(f"wrote {out} and {md_path}")
        return 0
    cli.log_stderr(f"benchmarking on {a.backend}")
    res = run(cfg, only=tuple(a.only), log=cli.log_stderr)
    res["provenance"] = provenance(command.strip(), get_xp(a.backend))
    text = table(res)
    print(json.dumps(res, default=float) if a.json else text)
    _write(out, md_path, res, f"# Benchmark\n\nCommand: `{command.strip()}` ({res['seconds']:.0f} s)\n\n"
                              f"{machine_md(res['machine'])}\n\n{text}\n")
    cli.log_stderr(f"wrote {out} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
