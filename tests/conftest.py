"""Shared fixtures: one test body for every backend (STYLE 9) and the hypothesis profile.

``xp`` runs a test once on NumPy and, where CuPy sees a GPU, once more on CuPy; expected
values are always computed in NumPy and compared after ``to_host``.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from icsnn_np.backend import cupy_available, get_xp

# Session-wide hypothesis defaults (STYLE 8): no deadline (the first example pays for lazy
# imports and thread-pool start-up) and few examples, so the suite stays fast on 2 cores.
# Tests that need more examples say so with their own @settings.
settings.register_profile("icsnn", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("icsnn")

_NO_GPU = "CuPy with a GPU not available"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: the CuPy case of a backend-parametrised test")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module of one backend; the CuPy case is skipped without CuPy and a GPU."""
    if request.param == "cupy" and not cupy_available():
        pytest.skip(_NO_GPU)
    return get_xp(request.param)


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test, so each test is reproducible on its own."""
    return np.random.default_rng(12345)
