"""Bad input to the core API (convert, simulate, init_mem, checks; issue 14 and 25): NaN
and inf where values enter, thresholds <= 0, v(0) and V_th of the wrong shape, empty batches,
raw integer images, T and chunk out of range: one clear error, no warning first. The shared
cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import run_sim
from bad_input import NAN, INF, replaced, snn8, snn_of, set_on, Api, check_api_case

from icsnn_np.checks import MAX_T, check_T
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.init_mem import alg2_data_init
from icsnn_np.layers import Conv2d, Flatten, Linear, ReLU
from icsnn_np.module import Sequential
from icsnn_np.simulate import simulate


def _nan_weights_after_convert(e):
    model = Sequential(Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(1)), ReLU(), Flatten(),
                       Linear(256, 3, rng=np.random.default_rng(2)))
    snn = convert(model)
    model[0].params["weight"][0] = NAN            # changed after conversion (shared weights)
    balance_thresholds(snn, model, [e.x])


def _alg2_overflow(e):
    """Currents that overflow float32: v(T) is inf, Alg. 2's mean of it is not a v(0)."""
    model = Sequential(Flatten(), Linear(192, 4, rng=np.random.default_rng(0)), ReLU(), Linear(4, 2))
    model[1].params["weight"][...] = 3e38
    with np.errstate(over="ignore", invalid="ignore"):
        alg2_data_init(convert(model), [np.abs(e.x) + 1], 2)


def _nan_linear():
    m = Sequential(Linear(2, 2, rng=np.random.default_rng(0)), ReLU(), Linear(2, 2))
    m[0].params["weight"][0, 0] = NAN
    return m


API = [
    # NaN / inf where values enter
    Api("NaN pixel among calibration images (balance_thresholds)",
        lambda e: balance_thresholds(convert(e.model), e.model, [replaced(e.x, (1, 0, 2, 2), NAN)]),
        ValueError, "calibration batch 0 contains NaN or inf"),
    Api("NaN input to the simulation (reference)",
        lambda e: simulate(snn_of(e), replaced(e.x, (2, 1, 3, 3), NAN), 4), ValueError,
        "the input batch contains NaN or inf"),
    Api("inf input to the simulation (fast)",
        lambda e: run_sim(snn_of(e), replaced(e.x, (2, 1, 3, 3), -INF), 4, engine="fast"), ValueError,
        "the input batch contains NaN or inf"),
    Api("NaN weights into convert", lambda e: convert(_nan_linear()), ValueError,
        "weight tensor 0.weight contains NaN or inf"),
    Api("NaN weights after convert (calibration activations)", _nan_weights_after_convert, ValueError,
        "1: the calibration activations contain NaN or inf"),
    Api("V_th = 0", lambda e: run_sim(snn_of(e, 0.0), e.x, 4), ValueError, "1: threshold V_th has a value <= 0"),
    Api("V_th < 0 (fast engine)", lambda e: run_sim(snn_of(e, -0.5), e.x, 4, engine="fast"), ValueError,
        "threshold V_th has a value <= 0 (-0.5)"),
    Api("V_th NaN", lambda e: simulate(snn_of(e, NAN), e.x, 4), ValueError, "threshold V_th has NaN or inf"),
    Api("V_th inf", lambda e: simulate(snn_of(e, INF), e.x, 4), ValueError, "threshold V_th has NaN or inf"),
    Api("channel-wise V_th with a zero",
        lambda e: simulate(snn_of(e, np.array([1, 1, 0, 1.0]).reshape(4, 1, 1)), e.x, 4), ValueError,
        "has a value <= 0"),
    Api("v(0) NaN through set_v0", lambda e: snn_of(e).set_v0([NAN]), ValueError, "1: v(0) contains NaN or inf"),
    Api("v(0) inf set on the node", lambda e: simulate(set_on(snn_of(e), v0=np.full((4, 1, 1), INF)), e.x, 4),
        ValueError, "v(0) contains NaN or inf"),
    Api("Alg. 2 on overflowing currents", _alg2_overflow, ValueError,
        "the SNN's potentials or outputs contain NaN or inf: the inputs overflow float32"),
    Api("rate coding with a NaN mean", lambda e: simulate(snn_of(e), e.x, 2, coding="rate", mean=[NAN] * 3,
                                                          std=[0.2] * 3), ValueError, "rate coding: mean"),
    # empty batches, raw integer images, labels
    Api("raw uint8 images into simulate", lambda e: simulate(snn_of(e), e.raw, 4), ValueError,
        "is uint8, not a normalised float batch"),
    Api("raw uint8 calibration batch into balance_thresholds",
        lambda e: balance_thresholds(convert(e.model), e.model, [e.raw]), ValueError,
        "calibration batch 0 is uint8"),
    Api("empty batch into simulate", lambda e: simulate(snn_of(e), e.x[:0], 4), ValueError,
        "the input batch is empty (0 images)"),
    Api("no calibration batches into balance_thresholds",
        lambda e: balance_thresholds(convert(e.model), e.model, []), ValueError,
        "needs at least one batch of calibration images"),
    Api("T above 2**24", lambda e: simulate(snn_of(e), e.x, MAX_T + 1), ValueError, "more than 16,777,216"),
    Api("T = 0", lambda e: simulate(snn_of(e), e.x, 0), ValueError, "T must be a positive integer"),
    Api("T not an integer", lambda e: check_T(2.5), ValueError, "T must be a positive integer"),
    Api("chunk = 0", lambda e: run_sim(snn_of(e), e.x, 4, engine="fast", chunk=0), ValueError,
        "chunk must be >= 1"),
    Api("rate coding: 2 mean values for 3 channels", lambda e: simulate(
        snn_of(e), e.x, 2, coding="rate", mean=[0.5] * 2, std=[0.2] * 2), ValueError,
        "rate coding: mean/std hold 2/2 values for images with 3 channels"),
    Api("v(0) of another layer's shape", lambda e: simulate(set_on(snn_of(e), v0=np.zeros((5, 1, 1))), e.x, 2),
        ValueError, "V_th () / v(0) (5, 1, 1) do not fit the state (4, 4, 8, 8): a scalar, (C, 1, 1)"),
    Api("V_th of another layer's shape (fast engine)",
        lambda e: run_sim(set_on(snn_of(e), v_th=np.ones((5, 1, 1), np.float32)), e.x, 2, engine="fast"),
        ValueError, "V_th (5, 1, 1) / v(0) () do not fit the state"),
    Api("flat (C,) V_th where C equals the width (would vary along the width)",
        lambda e: simulate(set_on(snn8(), v_th=np.linspace(0.5, 2, 8)), e.x, 2),
        ValueError, "V_th (8,) / v(0) () do not fit the state (4, 8, 8, 8)"),
    Api("flat (C,) v(0) where C equals the width (fast engine)",
        lambda e: run_sim(set_on(snn8(), v0=np.zeros(8, np.float32)), e.x, 2, engine="fast"),
        ValueError, "V_th () / v(0) (8,) do not fit the state (4, 8, 8, 8)"),
]


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    check_api_case(c, env, files)
