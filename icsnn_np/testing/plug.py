"""Plug the CPU stand-in for CuPy into the backend, from outside (tests, ``testing.run``).

    plug_standin()              # from now on get_xp("cupy") / --backend cupy is the stand-in
    with standin() as cp: ...   # plugged for a block, the backend's state restored after

The core's ``backend`` has no stand-in plumbing: it keeps the loaded CuPy module in
``backend.cupy``, and this module puts the stand-in there.
"""
from __future__ import annotations

from contextlib import contextmanager

from .. import backend
from . import cupy_standin


def plug_standin():
    """``get_xp("cupy")``, ``xp_of`` and ``to_host`` use the stand-in from now on."""
    backend.cupy, backend.cupy_error = cupy_standin, None
    return cupy_standin


def unplug_standin():
    """Forget the stand-in: the next ``get_xp("cupy")`` tries the real CuPy again."""
    if backend.cupy is cupy_standin:
        backend.cupy, backend.cupy_error = None, None


@contextmanager
def standin():
    """The stand-in plugged in for a block; the backend's earlier state restored after."""
    saved = backend.cupy, backend.cupy_error
    try:
        yield plug_standin()
    finally:
        backend.cupy, backend.cupy_error = saved
