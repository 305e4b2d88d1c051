"""Run one of the package's commands with ``--backend cupy`` on the CPU stand-in for CuPy:

    python -m icsnn_np.testing.run icsnn_np.demo --backend cupy --T 4 --n-test 20

so the CuPy path of every command is checked without a GPU (the tests and
``scripts/gpu_check.py --standin`` run it). The commands themselves know nothing of it.
"""
from __future__ import annotations

import runpy
import sys

from .plug import plug_standin

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m icsnn_np.testing.run MODULE [ARGS ...]")
    plug_standin()
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
