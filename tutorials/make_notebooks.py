"""Regenerate the executed notebooks ``tutorials/NN_*.ipynb`` from the ``# %%`` scripts.

    pip install -e ".[docs]"                           # jupytext, nbconvert, nbformat, ipykernel
    OPENBLAS_NUM_THREADS=1 python tutorials/make_notebooks.py          # every step (minutes each)
    python tutorials/make_notebooks.py 04 05           # only these steps
    python tutorials/make_notebooks.py --no-execute    # the cells only, without outputs (seconds)
    python tutorials/make_notebooks.py --sync          # new cell sources, the outputs kept

Every numbered step ``NN_*.py`` and appendix ``A1_*.py`` is read with jupytext and executed
with nbconvert in a fresh kernel whose working folder is ``tutorials/``. A kernel has no
``--quick`` among its arguments, so the steps run in **full mode**: the bundled model, the real
numbers, and the committed figures in ``tutorials/figures/`` are refreshed on the way.
``tests/tutorials/test_tutorials.py`` checks that each notebook holds its script's cells and was
run.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steps(prefixes=()):
    """The tutorial scripts (numbered steps, then appendices), or those whose name starts
    with one of ``prefixes``."""
    found = sorted(p for p in HERE.glob("*.py") if re.match(r"^(\d\d|A\d)_", p.name))
    return [p for p in found if not prefixes or p.name.startswith(tuple(prefixes))]


def make(path: Path, execute: bool = True, timeout: int = 3600) -> Path:
    """Write ``path`` as ``.ipynb`` next to it, executed unless ``execute`` is False."""
    try:
        import jupytext  # noqa: PLC0415 - the docs extra, not a runtime dependency
        from nbconvert.preprocessors import ExecutePreprocessor  # noqa: PLC0415
    except ImportError as e:
        sys.exit(f"{e.name} is missing: pip install -e '.[docs]'")
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if execute:
        ExecutePreprocessor(timeout=timeout, kernel_name="python3", record_timing=False).preprocess(
            nb, {"metadata": {"path": str(HERE)}})
    out = path.with_suffix(".ipynb")
    jupytext.write(nb, out)
    return out


def sync(path: Path) -> int:
    """Copy ``path``'s cell sources into its notebook, outputs kept; the cells changed."""
    import jupytext  # noqa: PLC0415
    import nbformat  # noqa: PLC0415
    new, nb_path = jupytext.read(path), path.with_suffix(".ipynb")
    old = nbformat.read(nb_path, as_version=4)
    if [c.cell_type for c in new.cells] != [c.cell_type for c in old.cells]:
        sys.exit(f"{path.name}: its cells differ in number or kind from the notebook's: run it again")
    changed = 0
    for a, b in zip(new.cells, old.cells):
        if a.source != b.source:
            b.source, changed = a.source, changed + 1
    nbformat.write(old, nb_path)
    return changed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("steps", nargs="*", help="step prefixes, e.g. 04 A1 (default: all)")
    p.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    p.add_argument("--sync", action="store_true",
                   help="only copy the cell sources into the notebooks, keeping their outputs")
    a = p.parse_args(argv)
    todo = steps(a.steps)
    if not todo:
        sys.exit(f"no tutorial step matches {a.steps}")
    for path in todo:
        if a.sync:
            print(f"{path.name}: {sync(path)} cells synced", flush=True)
            continue
        t0 = time.perf_counter()
        out = make(path, execute=not a.no_execute)
        print(f"{out.name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
