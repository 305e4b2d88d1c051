"""The backend switch: NumPy by default, CuPy only on request, one clear line when it can't be."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from icsnn_np import backend
from icsnn_np.backend import BackendError, backend_name, get_xp, to_device, to_host, xp_of


def test_to_device_takes_a_backend_name_too(xp):
    """``to_device(x, "numpy")`` works as ``to_device(x, np)`` (0.1 raised AttributeError)."""
    from icsnn_np.backend import backend_name as name
    a = to_device(np.arange(3.0), name(xp))
    assert xp_of(a) is xp and np.array_equal(to_host(a), np.arange(3.0))


def test_numpy_is_the_default():
    assert get_xp() is np
    assert get_xp("numpy") is np
    assert get_xp("NumPy") is np


@pytest.mark.parametrize("name", ["torch", "", "cuda", "numpy2"])
def test_unknown_backend_is_a_value_error_listing_the_choices(name):
    with pytest.raises(ValueError, match=r"unknown backend .*numpy, cupy"):
        get_xp(name)


@pytest.fixture
def fresh_backend(monkeypatch):
    """Forget the cached CuPy import so that the next request imports again (restored after)."""
    monkeypatch.setattr(backend, "cupy", None)             # no CuPy loaded, no stand-in
    monkeypatch.setattr(backend, "cupy_error", None)
    return monkeypatch


def test_missing_cupy_is_one_line_saying_how_to_install(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", None)     # makes `import cupy` raise ImportError
    assert not (backend.load_cupy() is not None)
    for _ in range(2):                                   # the cached failure raises every time
        with pytest.raises(BackendError) as info:
            get_xp("cupy")
        msg = str(info.value)
        assert "\n" not in msg
        assert "pip install" in msg and "[gpu]" in msg
        assert "--backend numpy" in msg


def test_cupy_without_a_gpu_is_one_clear_line(fresh_backend):
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 0))
    fresh_backend.setitem(sys.modules, "cupy", fake)
    assert not (backend.load_cupy() is not None)
    with pytest.raises(BackendError) as info:
        get_xp("cupy")
    msg = str(info.value)
    assert "\n" not in msg
    assert "no usable GPU" in msg and "--backend numpy" in msg


def test_cupy_driver_error_is_kept_in_the_message(fresh_backend):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver))
    fresh_backend.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendError, match="cudaErrorInsufficientDriver"):
        get_xp("cupy")


def test_numpy_still_works_when_cupy_is_missing(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendError):
        get_xp("cupy")
    assert get_xp("numpy") is np


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64])
def test_to_device_to_host_roundtrip(xp, rng, dtype):
    a = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    d = to_device(a, xp)
    assert xp_of(d) is xp
    back = to_host(d)
    assert type(back) is np.ndarray
    assert back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)


def test_to_host_accepts_host_values():
    np.testing.assert_array_equal(to_host([1.5, 2.5]), np.array([1.5, 2.5]))
    assert type(to_host(np.float32(3.0))) is np.ndarray


def test_backend_name_roundtrips(xp):
    assert get_xp(backend_name(xp)) is xp     # --backend cupy means the stand-in on its rows
    assert xp_of(xp.zeros(2)) is xp
