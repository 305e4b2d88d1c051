"""The stand-in's device array: a NumPy buffer behind CuPy's rules (see cupy_standin.py).

``ndarray`` refuses implicit conversion to NumPy and mixing with host arrays, returns its
results as device arrays, and counts every device -> host transfer in ``TRANSFERS``.
A testing aid, not part of the package's computations.
"""
from __future__ import annotations

import os
import sys
import types
from collections import Counter

import numpy as np


class Transfers:
    """Counts of copies between host and (stand-in) device; see the module docstring."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.to_host = 0
        self.to_device = 0
        self.sites: Counter = Counter()          # "file:line (what)" -> device -> host count
        self.device_sites: Counter = Counter()   # the same for host -> device copies
        return self

    def host(self, what: str):
        """Count one device -> host transfer made by ``what``, at the caller's line."""
        self.to_host += 1
        self.sites[f"{_caller()} ({what})"] += 1

    def device(self, what: str):
        """Count one host -> device copy made by ``what``, at the caller's line."""
        self.to_device += 1
        self.device_sites[f"{_caller()} ({what})"] += 1

    def report(self, to_device: bool = False) -> str:
        """The device -> host transfers (or host -> device copies) by place, most frequent
        first (for messages)."""
        sites = self.device_sites if to_device else self.sites
        return "; ".join(f"{n} x {site}" for site, n in sites.most_common()) or "none"


TRANSFERS = Transfers()
_SCALARS = (int, float, complex, bool, np.generic)
# frames skipped when naming the place of a transfer: this module and backend.py's to_host
_HERE = os.path.dirname(os.path.abspath(__file__))
_PASS_THROUGH = {os.path.join(_HERE, "standin_array.py"), os.path.join(_HERE, "cupy_standin.py"),
                 os.path.join(os.path.dirname(_HERE), "backend.py")}


def _caller() -> str:
    """file:line of the first frame outside this module and backend.py (the code that
    made the transfer)."""
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename) in _PASS_THROUGH:
        f = f.f_back
    if f is None:
        return "?"
    parts = f.f_code.co_filename.replace(os.sep, "/").split("/")
    return f"{'/'.join(parts[-2:])}:{f.f_lineno}"


def refuse(what: str):
    raise TypeError(f"cupy stand-in: {what}; use xp (the array module) and an explicit "
                    f"backend.to_host / to_device")


def _dev(x, where: str):
    """An argument of an ``xp`` function or method: a device array -> its NumPy buffer; a
    host array (0-d too) is refused; lists and tuples are unwrapped element by element;
    anything else (scalars, dtypes, shapes, slices, None, callables) passes."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        refuse(f"a host (NumPy) array was passed to {where}")
    if type(x) in (list, tuple):
        return type(x)(_dev(v, where) for v in x)
    return x


def _key(key, where: str):
    """An index of a device array: device index arrays unwrapped, host ones refused; a
    boolean device mask counts a transfer (CuPy reads the number of True to the host)."""
    parts = key if type(key) is tuple else (key,)
    for k in parts:
        if isinstance(k, ndarray) and k.dtype == np.bool_:
            TRANSFERS.host(f"boolean-mask {where}")
        elif isinstance(k, np.ndarray):
            refuse(f"a host (NumPy) array as an index of a device array ({where})")
    return _dev(key, where)


def _wrap(r):
    """NumPy results back onto the 'device' (0-d arrays for scalars, as CuPy returns)."""
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic):
        return ndarray(np.asarray(r))
    if isinstance(r, np.random.Generator):
        return Namespace(r, "random.Generator")
    if type(r) is tuple:
        return tuple(_wrap(v) for v in r)
    if type(r) is list:
        return [_wrap(v) for v in r]
    return r


# NumPy gives host numbers, CuPy 0-d device arrays (reading them is a transfer)
_DEVICE_SCALAR_RESULTS = {"array_equal", "array_equiv", "allclose", "count_nonzero"}
# CuPy reads the size of their result back to the host: a synchronisation
_SYNCING = {"nonzero", "argwhere", "flatnonzero", "unique", "compress", "extract"}


def device_function(fn, where: str):
    """``fn`` (a NumPy callable) taking and giving device arrays."""
    name = getattr(fn, "__name__", where)

    def call(*args, **kwargs):
        if name in _SYNCING or (name == "where" and len(args) + len(kwargs) == 1):
            TRANSFERS.host(where)
        r = fn(*_dev(list(args), where), **{k: _dev(v, where) for k, v in kwargs.items()})
        if name in _DEVICE_SCALAR_RESULTS and isinstance(r, (bool, int, float)):
            return ndarray(np.asarray(r))
        return _wrap(r)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{where} of the CuPy stand-in (NumPy's {name} on device arrays)"
    return call


class Namespace:
    """A host namespace (``np.random``, ``np.linalg``, a Generator) whose callables take
    and give device arrays."""

    def __init__(self, obj, name):
        self._obj, self._name = obj, name

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if isinstance(attr, types.ModuleType):
            return Namespace(attr, f"{self._name}.{name}")
        if isinstance(attr, type) or not callable(attr):
            return attr
        return device_function(attr, f"xp.{self._name}.{name}")

    def __repr__(self):
        return f"<cupy stand-in namespace {self._name}>"


# np.<function>(device array) is refused except for these, which read no data
_METADATA = {np.ndim, np.shape, np.size, np.result_type}
# raw access to the buffer: on CuPy these are device pointers or do not exist
_RAW = {"data", "ctypes", "tobytes", "tofile", "dump", "dumps", "tostring"}


class Device:
    """``cupy.cuda.Device``: the one (stand-in) device."""

    def __init__(self, i=0):
        self.id = i

    def synchronize(self):
        pass

    def __repr__(self):
        return f"<CUDA Device {self.id} (cupy stand-in)>"


class ndarray:  # noqa: N801 - CuPy's name
    """An array 'on the device': a NumPy buffer behind CuPy's rules (module docstring)."""

    __slots__ = ("_a",)
    __array_ufunc__ = None          # np.<ufunc>(device array) raises; operators defer to us
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, np.ndarray):
            raise TypeError("cupy stand-in: ndarray wraps a NumPy array")
        object.__setattr__(self, "_a", a)

    # -- what CuPy refuses ----------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        refuse("implicit conversion of a device array to NumPy (np.asarray, np.array)")

    def __array_function__(self, func, types_, args, kwargs):
        if func in _METADATA:
            strip = lambda v: v._a if isinstance(v, ndarray) else v  # noqa: E731
            return func(*[strip(a) for a in args], **{k: strip(v) for k, v in kwargs.items()})
        refuse(f"np.{func.__name__} called on a device array (CuPy would forward it to "
                f"cupy.{func.__name__} if that exists; the package calls xp.{func.__name__})")

    # -- explicit and implicit transfers to the host (counted) ----------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        TRANSFERS.host("ndarray.get")
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        """Host -> device copy into this array (CuPy's ``ndarray.set``)."""
        if not isinstance(arr, np.ndarray) or arr.dtype != self.dtype or arr.shape != self.shape:
            raise TypeError("cupy stand-in: ndarray.set takes a NumPy array of the same dtype and shape")
        TRANSFERS.device("ndarray.set")
        self._a[...] = arr

    def _scalar(self, kind):
        if self._a.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python scalars ({kind})")
        TRANSFERS.host(kind)
        return self._a.reshape(()).item()

    def __float__(self):
        return float(self._scalar("float()"))

    def __int__(self):
        return int(self._scalar("int()"))

    def __complex__(self):
        return complex(self._scalar("complex()"))

    def __index__(self):
        if not np.issubdtype(self._a.dtype, np.integer) or self._a.ndim:
            raise TypeError("only 0-d integer arrays can be used as an index")
        return int(self._scalar("operator.index()"))

    def __bool__(self):
        if self._a.size != 1:
            raise ValueError("The truth value of an array with more than one element (or none) "
                             "is ambiguous. Use a.any() or a.all()")
        return bool(self._scalar("bool()"))

    def item(self, *args):
        if args:
            TRANSFERS.host("ndarray.item()")
            return self._a.item(*args)
        return self._scalar("ndarray.item()")

    def tolist(self):
        TRANSFERS.host("ndarray.tolist()")
        return self._a.tolist()

    def __str__(self):
        TRANSFERS.host("str()")
        return str(self._a)

    def __repr__(self):
        TRANSFERS.host("repr()")
        return repr(self._a).replace("array(", "standin.array(", 1)

    def __format__(self, spec):
        TRANSFERS.host("format()")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    # -- attributes -----------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    device = property(lambda self: Device(0))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(r) for r in self._a)

    def __getattr__(self, name):
        """NumPy's methods (reshape, sum, astype, ...), with device results."""
        if name.startswith("__"):      # __array_interface__, buffer, dlpack: no way around
            raise AttributeError(name)
        if name in _RAW:
            refuse(f"raw buffer access `{name}` on a device array")
        if name == "flat":                              # NumPy's flatiter would give host values
            refuse("`a.flat` is not modelled by the stand-in (use a.ravel())")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)                          # real, imag, base
        return device_function(attr, f"ndarray.{name}")

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    def __reduce__(self):
        TRANSFERS.host("pickle")
        return _from_host, (self._a.copy(),)

    def __setattr__(self, name, value):
        if name == "shape":
            self._a.shape = value
            return
        raise AttributeError(f"cannot set {name!r} of a stand-in array")

    # -- indexing -------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_key(key, "indexing")])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            if value.ndim:
                refuse("a host (NumPy) array assigned into a device array")
            value = value.item()                       # CuPy fills with a 0-d host array's value
        self._a[_key(key, "assignment")] = _dev(value, "an assignment into a device array")


def _from_host(a):
    TRANSFERS.device("unpickle")
    return ndarray(a)


def _binary(name, compare=False):
    op = getattr(np.ndarray, name)

    def method(self, other):
        if isinstance(other, ndarray):
            other = other._a
        elif isinstance(other, np.ndarray):
            if not (compare and other.ndim == 0):
                refuse(f"a host (NumPy) array in `{name}` with a device array")
            other = other.item()                       # CuPy compares with its value
        elif not isinstance(other, _SCALARS):
            return NotImplemented
        r = op(self._a, other)
        if r is NotImplemented:
            return r
        return self if r is self._a else _wrap(r)

    method.__name__ = name
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift", "divmod"):
    for _pre in ("__", "__r", "__i"):
        _n = f"{_pre}{_name}__"
        if hasattr(np.ndarray, _n):
            setattr(ndarray, _n, _binary(_n))
for _n in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(ndarray, _n, _binary(_n, compare=True))
for _n in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _n, (lambda op: lambda self: _wrap(op(self._a)))(getattr(np.ndarray, _n)))




def buffer_of(a):
    """The NumPy buffer behind a stand-in device array (for the namespace's own functions)."""
    return a._a
