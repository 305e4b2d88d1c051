"""The modules that moved in 0.2.0, under their old names for this version (with a
DeprecationWarning naming the new place): ``import icsnn_np.checkpoint`` still works."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {f"icsnn_np.{old}": f"icsnn_np.{new}" for old, new in {
    "checkpoint": "io.checkpoint", "data": "io.data", "preprocess": "io.preprocess",
    "imports": "io.imports", "batchnorm": "io.batchnorm", "evaluate": "runs.evaluate",
    "protocol": "runs.protocol", "stats": "runs.stats", "tables": "runs.tables",
    "partial": "runs.partial", "progress": "runs.progress", "resources": "runs.resources",
    "methods": "beyond.methods", "winograd": "fast.winograd", "threads": "fast.threads"}.items()}


class Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name only (after every real module): the new module, with a warning."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]} in icsnn-np 0.2.0; the old name "
                      f"works for this version only", DeprecationWarning, stacklevel=3)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """Nothing to run: the new module ran when it was imported."""


def install():
    if not any(isinstance(f, Moved) for f in sys.meta_path):
        sys.meta_path.append(Moved())
