"""checks.py: every argument check accepts what is valid (returning it) and names what is
wrong in one line."""
import re

import numpy as np
import pytest

from icsnn_np.backend import to_device
from icsnn_np.runs.checks import check_count
from icsnn_np.checks import (check_choice, check_finite, check_quantile, check_T,
                             check_threshold)


@pytest.mark.parametrize("T", [1, 8, np.int64(16), np.int32(3)])
def test_check_T_accepts_positive_integers(T):
    assert check_T(T) == int(T) and type(check_T(T)) is int


@pytest.mark.parametrize("T", [0, -3, 2.5, 8.0, "8", True, False, None, np.float64(4)])
def test_check_T_rejects_everything_else(T):
    with pytest.raises(ValueError, match=re.escape(f"T must be a positive integer number of time steps, got {T!r}")):
        check_T(T)


def test_check_choice():
    assert check_choice("rate", ("direct", "rate"), "input coding") == "rate"
    with pytest.raises(ValueError, match="unknown input coding 'poisson'; choose one of direct, rate"):
        check_choice("poisson", ("direct", "rate"), "input coding")


def test_check_count():
    assert check_count(3, "epochs") == 3 and check_count(np.int64(0), "n", minimum=0) == 0
    for bad in (0, -1, 2.0, "3", True, None):
        with pytest.raises(ValueError, match=re.escape(f"epochs must be an integer >= 1, got {bad!r}")):
            check_count(bad, "epochs")


def test_check_quantile():
    assert check_quantile(1) == 1.0 and check_quantile("0.5") == 0.5 and check_quantile(1e-9) == 1e-9
    for bad in (0, -0.5, 1.0001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\]"):
            check_quantile(bad)
    for bad in (None, "high", [0.5], True, False):              # a bool is no quantile (not p = 1)
        with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\]"):
            check_quantile(bad)


def test_check_finite(xp):
    a = to_device(np.array([1.0, 2.0]), xp)
    assert check_finite(a, "x") is a and check_finite(3.0, "x") == 3.0
    for bad in (np.array([1.0, np.nan]), np.array([[np.inf]]), float("nan"), [1.0, -np.inf]):
        arr = to_device(bad, xp) if isinstance(bad, np.ndarray) else bad
        with pytest.raises(ValueError, match="^the weights contains NaN or inf$"):
            check_finite(arr, "the weights")


def test_check_threshold(xp):
    th = to_device(np.array([0.5, 1.0]), xp)
    assert check_threshold(th) is th and check_threshold(0.7, "relu1") == 0.7
    with pytest.raises(ValueError, match=r"relu1: threshold V_th has a value <= 0 \(0\)"):
        check_threshold(to_device(np.array([0.5, 0.0]), xp), "relu1")
    with pytest.raises(ValueError, match=r"layer2: threshold V_th has a value <= 0 \(-1\)"):
        check_threshold(-1.0, "layer2")
    with pytest.raises(ValueError, match="IF node: threshold V_th has NaN or inf"):
        check_threshold(float("nan"))
    with pytest.raises(ValueError, match="threshold V_th has NaN or inf"):
        check_threshold("high")


def test_a_bool_threshold_and_a_bad_backend_say_what_they_are():
    """``IFNode(True)``'s V_th is named as no number (not only "NaN"); ``to_device(x, 42)``
    says which backends there are (0.1: AttributeError)."""
    from icsnn_np.backend import to_device as dev
    with pytest.raises(ValueError, match=r"is no number \(bool\)"):
        check_threshold(True)
    with pytest.raises(ValueError, match="unknown backend 42; choose one of numpy, cupy"):
        dev(np.zeros(2), 42)
