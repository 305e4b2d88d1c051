"""Choose the array module once: NumPy (default) or CuPy.

This is the only module of the package that imports CuPy. Everything else receives an
array module ``xp`` (``numpy`` or ``cupy``) and writes one code path for both
(CuPy user guide, "CPU/GPU agnostic code").

    xp = get_xp("numpy")            # or "cupy"
    x_dev = to_device(x_host, xp)   # host -> device (a no-op on NumPy)
    x_host = to_host(x_dev)         # device -> host: an explicit sync point

For tests without a GPU, ``ICSNN_CUPY_STANDIN=1`` makes ``get_xp("cupy")`` return a strict
CPU stand-in for CuPy (``icsnn_np.testing.cupy_standin``): the same code path, checked for
implicit host/device conversions on every CI run.
"""
from __future__ import annotations

import os

import numpy as np

BACKENDS = ("numpy", "cupy")
STANDIN_ENV = "ICSNN_CUPY_STANDIN"
_devices: list = []            # the device array modules in use (CuPy, the stand-in)

_cupy = None
_cupy_error: str | None = None
_cupy_tried = False


class BackendError(RuntimeError):
    """The requested backend cannot be used here (one line says why and what to do)."""


def _try_cupy():
    """Import CuPy once and remember why it failed, without raising."""
    global _cupy, _cupy_error, _cupy_tried
    if _cupy_tried:
        return _cupy
    _cupy_tried = True
    try:
        import cupy  # noqa: PLC0415 - the one place cupy is imported

        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            raise RuntimeError("no CUDA device is visible")
        _cupy = cupy
        _devices.append(cupy)
    except ImportError:
        _cupy_error = ("CuPy is not installed: install the GPU extra with "
                       "`pip install 'icsnn-np[gpu]'` (or `pip install cupy-cuda12x`), "
                       "or use --backend numpy")
    except Exception as e:  # CUDA driver/runtime errors come in many classes
        _cupy_error = (f"CuPy is installed but no usable GPU was found ({e}); "
                       "use --backend numpy")
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return _try_cupy() is not None


def get_xp(backend: str = "numpy"):
    """Return the array module for ``backend`` ("numpy" or "cupy").

    Raises BackendError with a single actionable line when CuPy is asked for but
    missing, and ValueError for an unknown name.
    """
    name = str(backend).lower()
    if name == "numpy":
        return np
    if name == "cupy" and os.environ.get(STANDIN_ENV) == "1":
        return standin()
    if name == "cupy":
        cp = _try_cupy()
        if cp is None:
            raise BackendError(_cupy_error)
        return cp
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def standin():
    """The strict CPU stand-in for CuPy (a testing aid), registered as a device module."""
    from .testing import cupy_standin  # noqa: PLC0415 - only when asked for
    if cupy_standin not in _devices:
        _devices.append(cupy_standin)
    return cupy_standin


def xp_of(a):
    """The array module an array belongs to (numpy for anything that is not a device array)."""
    for m in _devices:
        if isinstance(a, m.ndarray):
            return m
    return np


def to_device(a, xp):
    """Copy a host array onto ``xp``'s device (returns it unchanged for NumPy)."""
    if xp is np:
        return np.asarray(a)
    return xp.asarray(a)


def to_host(a):
    """Bring an array back to a NumPy array on the host (a sync point on the GPU)."""
    for m in _devices:
        if isinstance(a, m.ndarray):
            return m.asnumpy(a)
    return np.asarray(a)


def backend_name(xp) -> str:
    return "numpy" if xp is np else "cupy"
