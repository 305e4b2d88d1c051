"""Shared fixtures: one test body for every backend (STYLE 9) and the hypothesis profile.

``xp`` runs a test on NumPy, on the strict CPU stand-in for CuPy (``icsnn_np.testing.
cupy_standin``: CuPy's rules on implicit conversions, transfers counted; marked ``standin``)
and, where CuPy sees a GPU, on CuPy (marked ``gpu``). Expected values are always computed in
NumPy and compared after ``to_host``. ``pytest -m standin`` / ``-m gpu`` run one backend's
rows (scripts/gpu_check.py does).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from icsnn_np import backend
from icsnn_np.backend import get_xp, load_cupy
from icsnn_np.testing import cupy_standin
from icsnn_np.testing.plug import plug_standin

# tests/ mirrors the package in subfolders (no __init__.py; pytest --import-mode=importlib), so
# the shared helpers.py and strategies.py are found from any of them through this one entry.
TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

# Session-wide hypothesis defaults (STYLE 8): no deadline (the first example pays for lazy
# imports and thread-pool start-up) and few examples, so the suite stays fast on 2 cores.
# Tests that need more examples say so with their own @settings. Derandomised: the same
# examples on every run, so CI's verdict depends on the code, not on the draw (a run with
# HYPOTHESIS_PROFILE=explore searches afresh).
settings.register_profile("icsnn", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "icsnn"))

_NO_GPU = "CuPy with a GPU not available"
BACKEND_PARAMS = ["numpy", pytest.param("standin", marks=pytest.mark.standin),
                  pytest.param("cupy", marks=pytest.mark.gpu)]


def backend_module(name):
    """The array module of a backend row: numpy, the CuPy stand-in, or CuPy (skipped
    without CuPy and a GPU)."""
    if name == "standin":
        return plug_standin()          # a testing aid, plugged into the backend from outside
    if name == "cupy":                 # the real CuPy, never a stand-in another test left plugged
        backend.cupy, backend.cupy_error = None, None
        if load_cupy() is None:
            pytest.skip(_NO_GPU)
    return get_xp(name)


@pytest.fixture(params=BACKEND_PARAMS)
def xp(request):
    """The array module of one backend: NumPy, the CuPy stand-in, CuPy (GPU only); the
    backend's CuPy slot is restored after the test (a stand-in row leaves no stand-in)."""
    saved = backend.cupy, backend.cupy_error
    yield backend_module(request.param)
    backend.cupy, backend.cupy_error = saved


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test, so each test is reproducible on its own."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints good and bad (an untrained vgg_cpu with the slice's normalisation) and
    other things a user may name: a folder, random bytes, a truncated archive, a .npy
    (the bad-input tests: tests/bad_input.py builds them)."""
    from bad_input import make_files
    return make_files(tmp_path_factory.mktemp("bad_input"))


@pytest.fixture(scope="module")
def env():
    """A tiny network (conv, ReLU, pool, linear) on 8x8 images, and a normalised batch
    (the API tables of the bad-input tests: tests/bad_input.py)."""
    from bad_input import make_env
    return make_env()
