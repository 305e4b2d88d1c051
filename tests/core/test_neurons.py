"""The IF neuron (Eq. 2-6) and the rate equation (Eq. 11) as laws of the simulation.

Eq. 11, summed Eq. 5:  r V_th = W (r_prev V_th_prev) + b + (v(0) - v(T)) / T  holds for
*every* neuron, weight, input, threshold, T and v(0) (to float rounding, float64 here).
In the package's names: spike_count / T = eq11_rate(mean current, v(0), v(T), V_th, T), whose
error term error_term(v0, v_T, V_th, T) = (v(0) - v(T)) / (T V_th) is bounded only under
conditions (v(0) = 0, per-step currents in [0, V_th]); a counter-example shows the bound
fails for negative currents.

The teaching ``IFNode`` runs one time step per ``forward`` call; its fast twin (chunks of
steps, tiles, threads) is tested against it in tests/fast/test_neurons.py.
"""
import numpy as np
import pytest
from helpers import F64
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (any_v0, bounded_floats, conv_layer_cases, float_arrays,
                        linear_layer_cases, thresholds)

from icsnn_np.backend import to_device, to_host
from icsnn_np.neurons import IFNode, broadcasts, eq11_rate, error_term


# --------------------------------------------------------------------------- helpers
def run_node(current, T, n, v_th=1.0, v0=0.0, record=True):
    """Drive a fresh IF node for T steps, one ``forward`` call per step, with ``current``:
    (T*n, ...) time-major (step t is rows t*n .. t*n+n-1), or (n, ...) the same at every
    step. Return (node, spikes*V_th of shape (T, n, ...))."""
    node = IFNode(v_th=v_th, v0=v0, name="test")
    node.reset(n, record=record)
    steps = [current if current.shape[0] == n and T > 1 else current[t * n:(t + 1) * n]
             for t in range(T)]
    out = np.stack([np.array(node.forward(c)) for c in steps])
    assert node.t == T
    return node, out


def hand_if(currents, v_th, v0):
    """One neuron by the book, with Python floats: (spike steps, v(T)). currents: length T."""
    v, fired = float(v0), []
    for t, i in enumerate(currents, start=1):
        v = v + float(i)                 # Eq. 2
        if v > v_th:                     # Eq. 6 (strict)
            fired.append(t)
            v = v - v_th                 # Eq. 3 soft reset
    return fired, v


def assert_eq11(case):
    """Drive the layer's IF node with the layer's output on the time-stacked spikes of the
    previous layer and check Eq. 11 neuron by neuron."""
    T, n, layer = case["T"], case["n"], case["layer"]
    x = case["spikes"].astype(F64) * case["v_th_prev"]                # x(t) = theta(t) V_th_prev
    current = layer.forward(x.reshape((T * n,) + x.shape[2:]))        # W x(t) + b, all t at once
    node, out = run_node(current, T, n, case["v_th"], case["v0"])
    rate = node.spike_count / T                                       # r: spikes per step
    drive = layer.forward(x.mean(axis=0))                             # W (r_prev V_th_prev) + b
    v0 = np.broadcast_to(case["v0"], node.v.shape)
    th = np.broadcast_to(case["v_th"], node.v.shape)
    scale = (1.0 + np.abs(current).max() + np.abs(v0).max() / T) / th.min()
    np.testing.assert_allclose(rate, eq11_rate(drive, v0, node.v, th, T), rtol=0,
                               atol=1e-11 * scale * T)
    # the rate really is spikes / T: every output is 0 or V_th, at most T spikes
    assert np.all((out == 0) | (out == th))
    np.testing.assert_array_equal(node.spike_count, (out != 0).sum(axis=0))
    assert node.spike_count.max(initial=0) <= T


# --------------------------------------------------------------------------- Eq. 11
@settings(max_examples=200, deadline=None)
@given(linear_layer_cases())
def test_eq11_identity_linear_layer(case):
    assert_eq11(case)


@settings(max_examples=150, deadline=None)
@given(conv_layer_cases())
def test_eq11_identity_conv_layer(case):
    assert_eq11(case)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 40), n=st.integers(1, 3), data=st.data(),
       v_th=thresholds, v0=any_v0, constant=st.booleans())
def test_eq11_identity_arbitrary_currents(T, n, data, v_th, v0, constant):
    """Any float currents (either sign, above threshold too), per-step or constant (n rows)."""
    rows = n if constant else T * n
    cur = data.draw(float_arrays((rows, 4), -10.0, 10.0))
    node, out = run_node(cur, T, n, v_th, v0)
    mean_cur = cur if constant else cur.reshape(T, n, 4).mean(axis=0)
    np.testing.assert_allclose(node.spike_count / T, eq11_rate(mean_cur, v0, node.v, v_th, T),
                               rtol=0, atol=1e-11 * (1 + 10 * T + abs(v0)) / v_th)
    # a sum of T outputs of V_th each carries up to T roundings: (T + 1) ulp, not 1
    np.testing.assert_allclose(out.sum(axis=0) / T, node.spike_count * v_th / T,
                               rtol=2 * (T + 1) * np.finfo(np.float64).eps)
    assert np.all((out == 0) | (out == v_th))
    assert node.spike_count.max() <= T and node.spike_count.min() >= 0


def test_eq11_fails_if_the_error_term_is_dropped():
    """The identity has teeth: without (v0 - vT)/T the decoded rate misses the drive."""
    cur = np.full((1, 1), 0.3)
    node, out = run_node(cur, 4, 1, 1.0, 0.0)      # 0.3*4 = 1.2: one spike, v(T) = 0.2
    rate = node.spike_count[0, 0] / 4
    assert rate == 0.25 and out.sum() / 4 == 0.25
    assert node.v[0, 0] == pytest.approx(0.2)
    assert rate != pytest.approx(0.3)                               # the drive alone misses
    assert error_term(0.0, node.v[0, 0], 1.0, 4) == pytest.approx(-0.05)
    assert rate == pytest.approx(eq11_rate(0.3, 0.0, node.v[0, 0], 1.0, 4))
    # with V_th = 2: rate 0 (2.4 never exceeds 2 before step 7), error term -(1.2)/(4*2)
    node, _ = run_node(cur, 4, 1, 2.0, 0.0)
    assert node.spike_count[0, 0] == 0
    assert eq11_rate(0.3, 0.0, node.v[0, 0], 2.0, 4) == pytest.approx(0.0, abs=1e-15)


def test_error_term_is_the_formula():
    assert error_term(0.5, -0.3, 2.0, 4) == pytest.approx(0.8 / 8)
    np.testing.assert_allclose(error_term(np.zeros(2), np.array([1.0, -1.0]), np.array([1.0, 0.5]), 2),
                               [-0.5, 1.0])


# --------------------------------------------------------------------------- the IF dynamics by hand
@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 30), data=st.data(), v_th=thresholds, v0=bounded_floats(-5, 5))
def test_matches_hand_simulation_and_first_spike(T, data, v_th, v0):
    """Spikes, v(T), counts and first-spike steps equal a per-neuron loop of Eq. 2-6."""
    cur = data.draw(float_arrays((T, 3), -2.0, 3.0))
    node, out = run_node(cur, T, 1, v_th, v0)
    for j in range(3):
        fired, v_T = hand_if(cur[:, j], v_th, v0)
        assert [t + 1 for t in np.flatnonzero(out[:, 0, j])] == fired
        assert node.v[0, j] == v_T                              # same float ops, same order
        assert node.spike_count[0, j] == len(fired)
        assert node.first_spike[0, j] == (fired[0] if fired else 0)
        assert 0 <= node.first_spike[0, j] <= T


def test_hand_checked_spike_trains():
    """V_th = 1, v0 = 0: 0.25 fires at step 5 (v_temp = 1.25 > 1; 1.0 is not > 1), 1.0 fires
    from step 2 on, -1 never fires and ends at -T; v(0) = 0.9 makes 0.25 fire at step 1."""
    T = 8
    node, out = run_node(np.tile([0.25, 1.0, -1.0], (T, 1)), T, 1)
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(out[:, 0, 1], [0, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(node.first_spike, [[5, 2, 0]])
    np.testing.assert_array_equal(node.spike_count, [[1, 7, 0]])
    np.testing.assert_allclose(node.v, [[1.0, 1.0, -8.0]])
    node, out = run_node(np.full((T, 1), 0.25), T, 1, v0=0.9)
    assert node.first_spike[0, 0] == 1 and node.spike_count[0, 0] == 2


# --------------------------------------------------------------------------- bounds, with their conditions
@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 40), data=st.data(), v_th=thresholds)
def test_error_term_bounded_for_currents_in_0_vth(T, data, v_th):
    """v(0) = 0 and I(t) in [0, V_th]  =>  v(T) in [0, V_th], (v0 - vT)/T in [-V_th/T, 0]."""
    frac = data.draw(float_arrays((T * 2, 6), 0.0, 1.0))
    node, out = run_node(frac * v_th, T, 2, v_th, 0.0)
    assert np.all(node.v >= 0) and np.all(node.v <= v_th)
    err = error_term(0.0, node.v, v_th, T)
    assert np.all(err >= -1.0 / T - 1e-15) and np.all(err <= 0)


def test_error_term_bound_fails_for_negative_currents():
    """Counter-example: I = -1 at every step, V_th = 1, v0 = 0, T = 4: v(T) = -4 < 0 and the
    error term (0 - (-4))/(4*1) = 1 lies far outside [-1/T, 0] = [-0.25, 0]."""
    T, v_th = 4, 1.0
    node, out = run_node(np.full((T, 1), -1.0), T, 1, v_th, 0.0)
    v_T = node.v[0, 0]
    assert v_T == -4.0 and v_T < 0
    err = error_term(0.0, v_T, v_th, T)
    assert err == 1.0 and not (-1.0 / T <= err <= 0)
    # and v(T) is unbounded below: it falls linearly with T
    node, _ = run_node(np.full((1, 1), -1.0), 400, 1, v_th, 0.0)
    assert node.v[0, 0] == -400.0


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 200), I=bounded_floats(-3.0, 6.0), v_th=thresholds)
def test_rate_approaches_clipped_relu(T, I, v_th):
    """Constant current I, v0 = 0: |rate - clip(I, 0, V_th)/V_th| <= 1/T (-> ReLU as T grows)."""
    node, out = run_node(np.full((1, 1), I), T, 1, v_th, 0.0)
    rate = node.spike_count[0, 0] / T
    assert abs(rate - np.clip(I, 0.0, v_th) / v_th) <= 1.0 / T + 1e-12


def test_rate_at_exactly_threshold_is_one_spike_short():
    """I == V_th: v_temp = V_th is not > V_th at step 1, so T-1 spikes; the 1/T bound is tight."""
    T = 10
    node, _ = run_node(np.full((1, 1), 1.0), T, 1, 1.0, 0.0)
    assert node.spike_count[0, 0] == T - 1


# --------------------------------------------------------------------------- shapes and errors
def test_threshold_and_v0_broadcast_per_channel_and_per_neuron():
    v_th = np.array([0.5, 1.0, 2.0]).reshape(3, 1, 1)
    v0 = np.arange(12, dtype=F64).reshape(3, 2, 2) / 10
    cur = np.full((2, 3, 2, 2), 0.6)
    node, out = run_node(cur, 1, 2, v_th, v0)
    np.testing.assert_allclose(np.broadcast_to(node.v_th_dev, node.v.shape),
                               np.broadcast_to(v_th, (2, 3, 2, 2)))
    fired = (v0 + 0.6) > v_th
    np.testing.assert_array_equal(out[0, 0] != 0, fired)
    np.testing.assert_allclose(node.v[0], v0 + 0.6 - fired * v_th)


def test_reset_forgets_state():
    node, _ = run_node(np.full((3, 2), 0.7), 3, 1, 1.0, 0.2)
    node.reset(1, record=True)
    assert node.t == 0 and node.v is None and node.spike_count is None
    for _ in range(3):
        node.forward(np.full((1, 2), 0.7))
    fresh, _ = run_node(np.full((3, 2), 0.7), 3, 1, 1.0, 0.2)
    np.testing.assert_array_equal(node.v, fresh.v)
    np.testing.assert_array_equal(node.spike_count, fresh.spike_count)
    np.testing.assert_array_equal(node.first_spike, fresh.first_spike)


def test_counting_and_recording_are_optional():
    node = IFNode(v_th=1.0)
    node.reset(2)
    node.forward(np.full((2, 3), 1.5))
    assert node.spike_count is None and node.first_spike is None
    node.reset(2, count=True)
    node.forward(np.full((2, 3), 1.5))
    np.testing.assert_array_equal(node.spike_count, np.ones((2, 3)))
    assert node.first_spike is None
    node.reset(2, record=True)                       # record implies count
    node.forward(np.full((2, 3), 1.5))
    np.testing.assert_array_equal(node.first_spike, np.ones((2, 3)))
    np.testing.assert_array_equal(node.spike_count, np.ones((2, 3)))


def test_bad_v0_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"do not fit the state \(2, 3\)"):
        run_node(np.zeros((2, 3)), 1, 2, 1.0, np.zeros((2, 2, 3)))      # too many dims
    with pytest.raises(ValueError):
        run_node(np.zeros((2, 3)), 1, 2, 1.0, np.zeros(4))              # wrong length


def test_wrong_number_of_current_rows_is_a_clear_error():
    node = IFNode(name="relu7")
    node.reset(2)
    with pytest.raises(ValueError, match=r"relu7: expected a current for 2 samples, got \(5, 4\)"):
        node.forward(np.zeros((5, 4)))


@pytest.mark.parametrize("v_th, match", [(float("nan"), "NaN or inf"), (np.inf, "NaN or inf"),
                                         (0.0, "<= 0"), (-1.0, "<= 0"),
                                         (np.array([1.0, 0.0, 2.0]), "<= 0"),
                                         (np.array([1.0, np.nan, 2.0]), "NaN or inf")])
def test_bad_threshold_is_a_clear_error_at_the_first_step(v_th, match):
    """A NaN threshold never fires and one <= 0 fires at every step: both are refused
    where the threshold enters, at the first step after a reset."""
    node = IFNode(v_th=v_th, name="relu3")
    node.reset(1)
    with pytest.raises(ValueError, match=f"relu3: threshold V_th has .*{match}"):
        node.forward(np.zeros((1, 3)))


@pytest.mark.parametrize("v0", [float("nan"), -np.inf, np.array([0.0, np.nan, 0.0])])
def test_non_finite_v0_is_a_clear_error(v0):
    node = IFNode(v0=v0, name="relu4")
    node.reset(1)
    with pytest.raises(ValueError, match=r"relu4: v\(0\) contains NaN or inf"):
        node.forward(np.zeros((1, 3)))


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("kind", ["layer", "channel", "neuron"])
def test_if_node_on_backend_agrees_with_numpy(xp, kind):
    """Eq. 2-6 on every backend, V_th and v(0) per layer or as device arrays per channel or
    per neuron: spikes, v(T), counts, first-spike times and Eq. 11 equal NumPy's."""
    rng = np.random.default_rng(3)
    T, shape = 7, {"layer": (), "channel": (3, 1, 1), "neuron": (3, 2, 2)}[kind]
    cur = rng.normal(0.3, 0.6, size=(T, 2, 3, 2, 2))
    v_th = rng.uniform(0.5, 1.5, shape) if shape else 0.8
    v0 = rng.uniform(-0.5, 0.5, shape) if shape else 0.25

    def run(xp_):
        dev = (lambda a: to_device(a, xp_)) if shape else (lambda a: a)
        node = IFNode(v_th=dev(v_th), v0=dev(v0), name="n")
        node.reset(2, record=True)
        spikes = np.stack([to_host(node.forward(to_device(c, xp_))) for c in cur])
        rate = eq11_rate(to_device(cur.mean(axis=0), xp_), dev(v0), node.v, dev(v_th), T)
        return (spikes, to_host(node.v), to_host(node.spike_count), to_host(node.first_spike),
                to_host(rate), to_host(xp_.broadcast_to(node.v_th_dev, node.v.shape)))

    for got, want in zip(run(xp), run(np)):
        assert type(got) is np.ndarray
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    spikes, _, count, _, rate, _ = run(xp)
    np.testing.assert_allclose(rate, count / T, rtol=1e-9, atol=1e-12)   # Eq. 11 on the device


def test_a_flat_per_channel_vector_is_refused_even_where_it_would_broadcast():
    """(C,) against a state (N, C, H, W) with C == W broadcasts along the width, not the
    channels: refused. One value in any shape, (C, 1, 1), (C, H, W) and (N, C, H, W) fit."""
    state = (2, 4, 4, 4)
    assert not broadcasts((4,), state) and not broadcasts((4, 4), state)
    for ok in [(), (1,), (1, 1, 1, 1), (4, 1, 1), (4, 4, 4), (1, 4, 1, 1), state]:
        assert broadcasts(ok, state), ok
    assert broadcasts((7,), (2, 7)) and not broadcasts((3,), (2, 7))   # a Linear layer's (F,)
