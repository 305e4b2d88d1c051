"""The IF neuron (Eq. 2-6) and the rate equation (Eq. 11) as laws of the simulation.

Eq. 11, summed Eq. 5:  r V_th = W (r_prev V_th_prev) + b + (v(0) - v(T)) / T  holds for
*every* neuron, weight, input, threshold, T and v(0) (to float rounding, float64 here).
Its error term is bounded only under conditions (v(0) = 0, per-step currents in [0, V_th]);
a counter-example shows the bound fails for negative currents.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from icsnn_np import neurons, threads
from icsnn_np.layers import Conv2d, Linear
from icsnn_np.neurons import IFNode

F64 = np.float64


# --------------------------------------------------------------------------- strategies
def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)


def arrays(shape, lo, hi):
    return hnp.arrays(F64, shape, elements=floats(lo, hi))


positive = floats(0.05, 4.0)                         # thresholds V_th > 0
any_v0 = floats(-1e3, 1e3)                           # v(0): any sign, large included


@st.composite
def per_neuron(draw, shape, values, channel_shape=None):
    """A scalar, a per-channel array (``channel_shape``) or a per-neuron array (``shape``)."""
    kind = draw(st.sampled_from(["scalar", "channel", "neuron"] if channel_shape else
                                ["scalar", "neuron"]))
    if kind == "scalar":
        return draw(values)
    return draw(hnp.arrays(F64, channel_shape if kind == "channel" else shape, elements=values))


@st.composite
def linear_case(draw):
    """Random Linear layer, spike trains of the previous layer, thresholds, v(0), T."""
    T = draw(st.integers(1, 40))
    n, f_in, f_out = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    lin = Linear(f_in, f_out, dtype=F64)
    lin.params["weight"] = draw(arrays((f_out, f_in), -2.0, 2.0))
    lin.params["bias"] = draw(arrays((f_out,), -1.0, 1.0))
    spikes = draw(hnp.arrays(bool, (T, n, f_in)))
    return dict(T=T, n=n, layer=lin, spikes=spikes, v_th_prev=draw(positive),
                v_th=draw(per_neuron((f_out,), positive)), v0=draw(per_neuron((f_out,), any_v0)))


@st.composite
def conv_case(draw):
    """Random Conv2d (both im2col paths: < 16 and >= 16 input channels), spikes, V_th, v(0)."""
    T = draw(st.integers(1, 40))
    n = draw(st.integers(1, 2))
    c_in = draw(st.sampled_from([1, 2, 17]))
    c_out = draw(st.integers(1, 3))
    k, stride, pad = draw(st.sampled_from([1, 3])), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    H = draw(st.integers(k, 4))
    conv = Conv2d(c_in, c_out, k, stride, pad, dtype=F64)
    conv.params["weight"] = draw(arrays((c_out, c_in, k, k), -1.0, 1.0))
    conv.params["bias"] = draw(arrays((c_out,), -1.0, 1.0))
    Ho = (H + 2 * pad - k) // stride + 1
    shape = (c_out, Ho, Ho)
    spikes = draw(hnp.arrays(bool, (T, n, c_in, H, H)))
    return dict(T=T, n=n, layer=conv, spikes=spikes, v_th_prev=draw(positive),
                v_th=draw(per_neuron(shape, positive, (c_out, 1, 1))),
                v0=draw(per_neuron(shape, any_v0, (c_out, 1, 1))))


# --------------------------------------------------------------------------- helpers
def run_node(current, T, n, v_th=1.0, v0=0.0, record=True):
    """Drive a fresh IF node with ``current`` ((T*n, ...) per step, or (n, ...) constant) in
    one chunk of T steps; return (node, spikes*V_th of shape (T, n, ...))."""
    node = IFNode(v_th=v_th, v0=v0, name="test")
    node.reset(n, record=record)
    node.chunk = T
    out = node.forward(current)
    return node, np.asarray(out).reshape((T, n) + tuple(current.shape[1:]))


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
    lhs = out.sum(axis=0) / T                                         # r V_th
    drive = layer.forward(x.mean(axis=0))                             # W (r_prev V_th_prev) + b
    v0 = np.broadcast_to(case["v0"], node.v.shape)
    rhs = drive + (v0 - node.v) / T
    scale = 1.0 + np.abs(current).max() + np.abs(v0).max() / T
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-11 * scale * T)
    # the rate really is spikes / T: every output is 0 or V_th, at most T spikes
    th = np.broadcast_to(case["v_th"], node.v.shape)
    assert np.all((out == 0) | (out == th))
    np.testing.assert_array_equal(node.spike_count, (out != 0).sum(axis=0))
    assert node.spike_count.max(initial=0) <= T


# --------------------------------------------------------------------------- Eq. 11
@settings(max_examples=200, deadline=None)
@given(linear_case())
def test_eq11_identity_linear_layer(case):
    assert_eq11(case)


@settings(max_examples=150, deadline=None)
@given(conv_case())
def test_eq11_identity_conv_layer(case):
    assert_eq11(case)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 40), n=st.integers(1, 3), data=st.data(),
       v_th=positive, v0=any_v0, constant=st.booleans())
def test_eq11_identity_arbitrary_currents(T, n, data, v_th, v0, constant):
    """Any float currents (either sign, above threshold too), per-step or constant (n rows)."""
    rows = n if constant else T * n
    cur = data.draw(arrays((rows, 4), -10.0, 10.0))
    node, out = run_node(cur, T, n, v_th, v0)
    mean_cur = cur if constant else cur.reshape(T, n, 4).mean(axis=0)
    np.testing.assert_allclose(out.sum(axis=0) / T, mean_cur + (v0 - node.v) / T,
                               rtol=0, atol=1e-11 * (1 + 10 * T + abs(v0)))
    assert np.all((out == 0) | (out == v_th))
    assert node.spike_count.max() <= T and node.spike_count.min() >= 0


def test_eq11_fails_if_the_error_term_is_dropped():
    """The identity has teeth: without (v0 - vT)/T the decoded rate misses the drive."""
    cur = np.full((1, 1), 0.3)
    node, out = run_node(cur, 4, 1, 1.0, 0.0)      # 0.3*4 = 1.2: one spike, v(T) = 0.2
    assert out.sum() / 4 == 0.25
    assert node.v[0, 0] == pytest.approx(0.2)
    assert out.sum() / 4 != pytest.approx(0.3)
    assert out.sum() / 4 == pytest.approx(0.3 + (0 - node.v[0, 0]) / 4)


# --------------------------------------------------------------------------- the IF dynamics by hand
@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 30), data=st.data(), v_th=positive, v0=floats(-5, 5))
def test_matches_hand_simulation_and_first_spike(T, data, v_th, v0):
    """Spikes, v(T), counts and first-spike steps equal a per-neuron loop of Eq. 2-6."""
    cur = data.draw(arrays((T, 3), -2.0, 3.0))
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


@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 30), data=st.data(), v_th=positive, v0=floats(-3, 3))
def test_constant_current_equals_repeated_current(T, data, v_th, v0):
    """An (N, ...) current with chunk > 1 is the same current at every step."""
    cur = data.draw(arrays((2, 3), -3.0, 3.0))
    a, out_a = run_node(cur, T, 2, v_th, v0)
    b, out_b = run_node(np.tile(cur, (T, 1)), T, 2, v_th, v0)
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(a.v, b.v)
    np.testing.assert_array_equal(a.first_spike, b.first_spike)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 24), data=st.data(), v_th=positive, v0=floats(-3, 3))
def test_chunking_does_not_change_spikes(T, data, v_th, v0):
    """State carries over between chunks: any split of T steps gives identical spikes and v."""
    n = 2
    cur = data.draw(arrays((T * n, 5), -2.0, 3.0))
    whole, out_whole = run_node(cur, T, n, v_th, v0)
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=4)) if T > 1 else [])
    node = IFNode(v_th=v_th, v0=v0)
    node.reset(n, record=True)
    outs = []
    for a, b in zip([0] + cuts, cuts + [T]):
        node.chunk = b - a
        outs.append(np.array(node.forward(cur[a * n:b * n])))
    np.testing.assert_array_equal(np.concatenate(outs).reshape(out_whole.shape), out_whole)
    np.testing.assert_array_equal(node.v, whole.v)
    np.testing.assert_array_equal(node.first_spike, whole.first_spike)
    np.testing.assert_array_equal(node.spike_count, whole.spike_count)
    assert node.t == T


def test_tiles_and_threads_do_not_change_spikes(monkeypatch):
    """The CPU loop's sample tiles and thread slices are an exact split (neurons independent)."""
    rng = np.random.default_rng(0)
    T, n = 6, 5
    cur = rng.normal(0.4, 1.0, (T * n, 3, 4, 4))
    v0 = rng.normal(0, 0.5, (3, 4, 4))
    ref, out_ref = run_node(cur, T, n, 0.7, v0)
    threads.num_workers()                                   # initialise before patching
    monkeypatch.setattr(neurons, "IF_TILE_ELEMENTS", 1)     # one sample per tile
    monkeypatch.setattr(threads, "_workers", 2)
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS", 0)
    node, out = run_node(cur, T, n, 0.7, v0)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(node.v, ref.v)
    np.testing.assert_array_equal(node.first_spike, ref.first_spike)


# --------------------------------------------------------------------------- bounds, with their conditions
@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 40), data=st.data(), v_th=positive)
def test_error_term_bounded_for_currents_in_0_vth(T, data, v_th):
    """v(0) = 0 and I(t) in [0, V_th]  =>  v(T) in [0, V_th], (v0 - vT)/T in [-V_th/T, 0]."""
    frac = data.draw(arrays((T * 2, 6), 0.0, 1.0))
    node, out = run_node(frac * v_th, T, 2, v_th, 0.0)
    assert np.all(node.v >= 0) and np.all(node.v <= v_th)
    err = (0.0 - node.v) / T
    assert np.all(err >= -v_th / T) and np.all(err <= 0)


def test_error_term_bound_fails_for_negative_currents():
    """Counter-example: I = -1 at every step, V_th = 1, v0 = 0, T = 4: v(T) = -4 < 0 and the
    error term (0 - (-4))/4 = 1 lies far outside [-V_th/T, 0] = [-0.25, 0]."""
    T, v_th = 4, 1.0
    node, out = run_node(np.full((T, 1), -1.0), T, 1, v_th, 0.0)
    v_T = node.v[0, 0]
    assert v_T == -4.0 and v_T < 0
    err = (0.0 - v_T) / T
    assert err == 1.0 and not (-v_th / T <= err <= 0)
    # and v(T) is unbounded below: it falls linearly with T
    node, _ = run_node(np.full((1, 1), -1.0), 400, 1, v_th, 0.0)
    assert node.v[0, 0] == -400.0


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 200), I=floats(-3.0, 6.0), v_th=positive)
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
    np.testing.assert_allclose(node.v_th_full(), np.broadcast_to(v_th, (3, 2, 2)))
    fired = (v0 + 0.6) > v_th
    np.testing.assert_array_equal(out[0, 0] != 0, fired)
    np.testing.assert_allclose(node.v[0], v0 + 0.6 - fired * v_th)


def test_reset_forgets_state():
    node, _ = run_node(np.full((3, 2), 0.7), 3, 1, 1.0, 0.2)
    node.reset(1, record=True)
    node.chunk = 3
    node.forward(np.full((3, 2), 0.7))
    fresh, _ = run_node(np.full((3, 2), 0.7), 3, 1, 1.0, 0.2)
    np.testing.assert_array_equal(node.v, fresh.v)
    np.testing.assert_array_equal(node.spike_count, fresh.spike_count)


def test_bad_v0_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="do not broadcast"):
        run_node(np.zeros((2, 3)), 1, 2, 1.0, np.zeros((2, 2, 3)))      # too many dims
    with pytest.raises(ValueError):
        run_node(np.zeros((2, 3)), 1, 2, 1.0, np.zeros(4))              # wrong length


def test_wrong_number_of_current_rows_is_a_clear_error():
    node = IFNode(name="relu7")
    node.reset(2)
    node.chunk = 3
    with pytest.raises(ValueError, match=r"relu7: expected a current with 2 or 3\*2 rows"):
        node.forward(np.zeros((5, 4)))
