"""A strict CPU stand-in for CuPy: a testing aid, not a backend.

The GPU path is written once for NumPy and CuPy through ``xp`` (backend.py), but a GPU is
rarely there to run it. This module lets every CI run check that path on the CPU the way
SciPy and scikit-learn check their array-agnostic code with strict array libraries: its
arrays are of a distinct type, backed by NumPy, that fail where CuPy's fail and count every
device -> host transfer. Nothing in the package's own computations imports it.

    ICSNN_CUPY_STANDIN=1 python -m icsnn_np.demo --backend cupy    # any --backend cupy CLI

    from icsnn_np import backend
    cp = backend.standin()                     # registered: xp_of/to_host know its arrays
    cp.TRANSFERS.reset(); ...; assert cp.TRANSFERS.to_host == 2, cp.TRANSFERS.report()

What it refuses, as CuPy does (TypeError unless said otherwise):

* implicit conversion to NumPy: ``np.asarray(a)``/``np.array(a)`` (``__array__``);
* a NumPy array, 0-d included, as an operand of an arithmetic operator or an ``xp``
  function, or as ``out=`` (CuPy: "Unsupported type numpy.ndarray"); NumPy *scalars*
  (``np.float32(2)``) and Python numbers are fine, and a 0-d NumPy array may be compared
  with (CuPy takes its value);
* a non-0-d NumPy array assigned into a device array (``dev[...] = host``);
* the truth value of an array of more than one element (ValueError), ``float``/``int`` of one.

What it counts in ``TRANSFERS`` (each one a synchronisation on a GPU):

* ``to_host``: device -> host, explicit (``asnumpy``, ``.get()``) or implicit as in CuPy:
  ``float``/``int``/``bool``/``complex``/``operator.index`` of an array, ``.item()``,
  ``.tolist()``, ``str``/``repr``/``format`` of an array, and the operations whose result
  size is read back from the device: boolean-mask indexing (``a[mask]``, and
  ``a[mask] = v`` too), ``nonzero``, ``argwhere``, ``flatnonzero``, ``unique``, ``compress``,
  ``extract``, one-argument ``where``. ``TRANSFERS.sites`` says where (file:line, what);
* ``to_device``: host -> device copies (``asarray``/``array`` of host data, ``.set``).

Results stay on the device: a reduction, ``a[i, j]``, ``xp.array_equal``, ``xp.allclose``
and ``xp.count_nonzero`` give 0-d device arrays (CuPy has no device scalars), never host
numbers; ``xp.random``/``xp.linalg``/``xp.fft`` give device arrays too.

Deliberately stricter than CuPy (so that one ``xp`` code path is kept, never relied on):

* ``np.<function>(device array)`` raises TypeError, where CuPy's ``__array_function__``
  forwards it to ``cupy.<function>`` when one exists (and raises when none does - the
  failure that appears only on a GPU). Metadata queries that read no data pass:
  ``np.ndim``, ``np.shape``, ``np.size``, ``np.result_type``;
* ``np.<ufunc>(device array)`` raises TypeError (``__array_ufunc__ = None``), where CuPy
  forwards it to ``cupy.<ufunc>``; Python operators work as in CuPy;
* a NumPy array as an index of a device array raises TypeError, where CuPy copies it to
  the device silently;
* ``a.data``, ``a.ctypes``, ``a.tobytes()`` and other raw-buffer access raise TypeError,
  and so does ``a.flat`` (CuPy's flatiter is not modelled).

Not modelled: streams and asynchrony (everything runs at once on the CPU), memory pools,
custom kernels (``ElementwiseKernel``, ``fuse``), dtype rules where CuPy differs from NumPy.
``cuda`` holds just enough of ``cupy.cuda`` for the benchmark's timers (events measured on
the host clock) and the memory check.
"""
from __future__ import annotations

import sys
import time
import types

import numpy as np

from .standin_array import (TRANSFERS, Device, Namespace, Transfers, buffer_of, device_function,  # noqa: F401
                            ndarray, refuse)

__all__ = ["TRANSFERS", "Transfers", "ndarray", "asarray", "array", "asnumpy", "get_array_module",
           "cuda", "get_default_memory_pool"]
__version__ = "standin"


# --------------------------------------------------------------------------- the namespace
def _from_sequence(a):
    """(buffer, is host data) of asarray/array's input: a (nested) list of device arrays is
    stacked on the device, as CuPy does; host data mixed with device arrays is refused."""
    if isinstance(a, ndarray):
        return buffer_of(a), False
    if type(a) in (list, tuple) and any(isinstance(v, (ndarray, list, tuple)) for v in a):
        parts = [_from_sequence(v) for v in a]
        hosts = {h for _, h in parts}
        if hosts == {False}:
            return np.array([b for b, _ in parts]), False
        if False in hosts:
            refuse("host data and device arrays mixed in one xp.asarray / xp.array")
    return a, True


def asarray(a, dtype=None, order=None, *, blocking=False):
    """Host -> device (counted), or a device array as it is (cast to ``dtype``)."""
    buf, host = _from_sequence(a)
    if not host:
        if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return ndarray(np.asarray(buf, dtype=dtype))
    TRANSFERS.device("xp.asarray")
    return ndarray(np.array(buf, dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """Like ``asarray``, but a device array is copied unless ``copy=False`` (as CuPy's)."""
    buf, host = _from_sequence(obj)
    if host:
        TRANSFERS.device("xp.array")
        return ndarray(np.array(buf, dtype=dtype, order=order, copy=True, ndmin=ndmin))
    return ndarray(np.array(buf, dtype=dtype, order=order, copy=copy or None, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """Device -> host (counted); host values pass through, as CuPy's does."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


class _Event:
    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(
    Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=lambda: None)),
    Event=_Event,
    get_elapsed_time=lambda start, end: 1e3 * (end.t - start.t),
    Device=Device,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1,
                                  getDeviceProperties=lambda i: {"name": b"CuPy stand-in (CPU)"},
                                  memGetInfo=lambda: (16 << 30, 16 << 30)),   # (free, total) bytes
)


class _Pool:
    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_POOL = _Pool()


def get_default_memory_pool():
    return _POOL


def __getattr__(name):
    """Everything else from NumPy's namespace, taking and giving device arrays."""
    attr = getattr(np, name)
    if isinstance(attr, types.ModuleType):
        return Namespace(attr, name)                # random, linalg, fft: device arrays too
    if isinstance(attr, type) or not callable(attr):
        return attr                                  # dtypes, constants, newaxis
    return device_function(attr, f"xp.{name}")
