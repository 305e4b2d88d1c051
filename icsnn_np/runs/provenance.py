"""What made a result: recorded in every result file (``provenance``), so a number can be
traced to the code, the libraries and the machine that printed it."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np

from ..backend import backend_name
from ..fast.blas import openblas

ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes), None outside a checkout."""
    if not (ROOT / ".git").exists():
        return None
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True,  # noqa: E731
                                        text=True, timeout=10)
        head = run("rev-parse", "HEAD")
        if head.returncode:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(command: str, xp=np) -> dict:
    """Package version, git commit, Python, NumPy (and CuPy with its GPU when ``xp`` is it),
    the BLAS, the CPU and the command."""
    from .. import __version__  # noqa: PLC0415 - the package's own front door
    blas = openblas()
    out = {"package": "icsnn-np", "version": __version__, "git_commit": git_commit(),
           "python": platform.python_version(), "numpy": np.__version__,
           "blas": None if blas is None else f"OpenBLAS {blas.core or '?'} ({blas.config or '?'})",
           "cpu": cpu_name(), "command": command, "backend": backend_name(xp)}
    if xp is not np:
        out["cupy"] = getattr(xp, "__version__", "?")
        try:
            props = xp.cuda.runtime.getDeviceProperties(0)
            out["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        except Exception:  # noqa: BLE001 - a stand-in or an old CuPy: the GPU stays unnamed
            out["gpu"] = None
    return out

