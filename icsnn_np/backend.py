"""Choose the array module once: NumPy (default) or CuPy.

The only module of the package that imports CuPy. Everything else receives an array
module ``xp`` and writes one code path for both (CuPy user guide, "CPU/GPU agnostic code").

    xp = get_xp("numpy")            # or "cupy"
    x_dev = to_device(x_host, xp)   # host -> device (a no-op on NumPy)
    x_host = to_host(x_dev)         # device -> host: an explicit sync point
"""
from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "cupy")
_devices: list = []            # the device array modules in use (CuPy, a stand-in)
_standin = None                # a CPU module that plays CuPy (use_standin), or None
_cupy, _cupy_error, _cupy_tried = None, None, False


class BackendError(RuntimeError):
    """The requested backend cannot be used here (one line says why and what to do)."""


def _try_cupy():
    """Import CuPy once and remember why it failed, without raising."""
    global _cupy, _cupy_error, _cupy_tried
    if not _cupy_tried:
        _cupy_tried = True
        try:
            import cupy  # noqa: PLC0415 - the one place cupy is imported

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device is visible")
            _cupy = cupy
            _devices.append(cupy)
        except ImportError:
            _cupy_error = ("CuPy is not installed: install the GPU extra for your CUDA, `pip "
                           "install 'icsnn-np[gpu]'` (CUDA 12) or `pip install "
                           "'icsnn-np[gpu-cuda13]'` (CUDA 13), or use --backend numpy")
        except Exception as e:  # noqa: BLE001 - CUDA errors come in many classes
            _cupy_error = f"CuPy is installed but no usable GPU was found ({e}); use --backend numpy"
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return _try_cupy() is not None


def use_standin(module):
    """From now on ``get_xp("cupy")`` returns ``module``, a CPU stand-in for CuPy (tests and
    ``ICSNN_CUPY_STANDIN=1`` plug one in from outside; ``None`` unplugs it)."""
    global _standin
    _standin = module
    if module is not None and module not in _devices:
        _devices.append(module)


def get_xp(backend: str = "numpy"):
    """The array module for ``backend``: a clear BackendError when CuPy is missing."""
    name = str(backend).lower()
    if name == "numpy":
        return np
    if name == "cupy":
        if _standin is not None:
            return _standin
        if _try_cupy() is None:
            raise BackendError(_cupy_error)
        return _cupy
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def xp_of(a):
    """The array module an array belongs to (numpy for anything that is not a device array)."""
    for m in _devices:
        if isinstance(a, m.ndarray):
            return m
    return np


def to_device(a, xp):
    """Copy a host array onto ``xp``'s device (returns it unchanged for NumPy)."""
    return np.asarray(a) if xp is np else xp.asarray(a)


def to_host(a):
    """Bring an array back to a NumPy array on the host (a sync point on the GPU)."""
    for m in _devices:
        if isinstance(a, m.ndarray):
            return m.asnumpy(a)
    return np.asarray(a)


def backend_name(xp) -> str:
    return "numpy" if xp is np else "cupy"
