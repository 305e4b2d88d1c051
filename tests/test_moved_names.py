"""0.1's module names (moved in 0.2.0) still import for this version, with a DeprecationWarning
that names the new place; a name that never existed is still an ImportError."""
from __future__ import annotations

import importlib
import sys

import pytest

from icsnn_np._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_name_is_the_new_module_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new} in icsnn-np 0.2.0"):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)


def test_an_unknown_name_is_still_an_import_error():
    with pytest.raises(ImportError, match="icsnn_np.never_was"):
        importlib.import_module("icsnn_np.never_was")
