"""The OpenBLAS that NumPy loaded: its thread count, its kernels, its build.

NumPy does not expose the BLAS's thread count; OpenBLAS does, through C functions whose
names depend on how it was built (``scipy_openblas_set_num_threads64_`` in NumPy's wheels,
``openblas_set_num_threads`` in a system build). ``openblas()`` finds the library in the
process's memory map (Linux ``/proc/self/maps``) and binds them. Where that fails (another
BLAS, another OS) every function here answers None and nothing is changed.
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import Callable

_NAMES = (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", ""))


@dataclass(frozen=True)
class OpenBLAS:
    get_threads: Callable[[], int]
    set_threads: Callable[[int], None]
    core: str | None          # the kernel family in use, e.g. "Haswell", "SkylakeX"
    config: str | None        # the build string


def _bind(lib, what, restype, argtypes=None):
    for pre, suf in _NAMES:
        fn = getattr(lib, f"{pre}{what}{suf}", None)
        if fn is not None:
            fn.restype = restype
            if argtypes is not None:
                fn.argtypes = argtypes
            return fn
    return None


@functools.lru_cache(maxsize=1)
def openblas() -> OpenBLAS | None:
    """The OpenBLAS NumPy uses, or None where it cannot be found and controlled."""
    import numpy  # noqa: F401,PLC0415 - NumPy (and so its BLAS) must be loaded first
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = _bind(lib, "get_num_threads", ctypes.c_int)
        set_ = _bind(lib, "set_num_threads", None, [ctypes.c_int])
        if get is None or set_ is None:
            continue
        core = _bind(lib, "get_corename", ctypes.c_char_p)
        config = _bind(lib, "get_config", ctypes.c_char_p)
        return OpenBLAS(get, set_, core().decode() if core else None,
                        config().decode() if config else None)
    return None


def thread_count() -> int | None:
    """The BLAS's current thread count, None if unknown."""
    lib = openblas()
    return None if lib is None else int(lib.get_threads())
