"""The package's version: the installed metadata's, else the checkout's pyproject.toml."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path


def _version() -> str:
    try:
        return metadata.version("icsnn-np")
    except metadata.PackageNotFoundError:      # run from a checkout (PYTHONPATH=.), not installed
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        m = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return m.group(1) if m else "unknown"


__version__ = _version()
