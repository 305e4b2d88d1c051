"""Choose the array module once: NumPy (default) or CuPy, the only module importing CuPy;
everything else writes one code path for both through ``xp`` (CuPy's "CPU/GPU agnostic code").
    xp = get_xp("numpy")            # or "cupy"
    x_dev = to_device(x_host, xp)   # host -> device (a no-op on NumPy)
    x_host = to_host(x_dev)         # device -> host: an explicit sync point"""
from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "cupy")
cupy = None            # the CuPy module once loaded (the tests may put a CPU stand-in here)
cupy_error = None      # why it could not be loaded, said when it is asked for


class BackendError(RuntimeError):
    """The requested backend cannot be used here (one line says why and what to do)."""


def load_cupy():
    """Import CuPy once (None if it cannot be used here, the reason kept in cupy_error)."""
    global cupy, cupy_error
    if cupy is None and cupy_error is None:
        try:
            import cupy as cp  # noqa: PLC0415 - the one place cupy is imported

            if cp.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device is visible")
            cupy = cp
        except ImportError:
            cupy_error = ("CuPy is not installed: install the GPU extra for your CUDA, `pip "
                          "install 'icsnn-np[gpu]'` (CUDA 12) or `pip install "
                          "'icsnn-np[gpu-cuda13]'` (CUDA 13), or use --backend numpy")
        except Exception as e:  # noqa: BLE001 - CUDA errors come in many classes
            cupy_error = f"CuPy is installed but no usable GPU was found ({e}); use --backend numpy"
    return cupy


def get_xp(backend: str = "numpy"):
    """The array module for ``backend``: a clear BackendError when CuPy is missing."""
    name = str(backend).lower()
    if name == "cupy" and load_cupy() is None:
        raise BackendError(cupy_error)
    if name in BACKENDS:
        return np if name == "numpy" else cupy
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def xp_of(a):
    """The array module an array belongs to (numpy for anything that is not a device array)."""
    return cupy if cupy is not None and isinstance(a, cupy.ndarray) else np


def to_device(a, xp):
    """Copy a host array onto ``xp``'s device (``xp``: an array module or a backend name)."""
    xp = xp if hasattr(xp, "asarray") else get_xp(xp)     # a module, or a backend's name
    return np.asarray(a) if xp is np else xp.asarray(a)


def to_host(a):
    """Bring an array back to a NumPy array on the host (a sync point on the GPU)."""
    return np.asarray(a) if xp_of(a) is np else cupy.asnumpy(a)


def backend_name(xp) -> str:
    return "numpy" if xp is np else "cupy"
