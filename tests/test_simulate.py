"""The time-chunked engine against the step-by-step reference, Eq. 11 end to end, records,
input coding, bounded memory and clear errors. Networks are tiny and float64, so rounding
cannot flip a spike between the two engines."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icsnn_np.backend import to_device, to_host
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.layers import AvgPool2d, BasicBlock, Conv2d, Flatten, Linear, ReLU, Sequential
from icsnn_np.simulate import SimResult, predict, rate_encode, simulate, simulate_reference

F64 = np.float64
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


# --------------------------------------------------------------------------- tiny networks
def _random_biases(net, rng):
    for _, m in net.named_modules():
        if "bias" in m.params:
            m.params["bias"][...] = rng.normal(0, 0.3, m.params["bias"].shape)
    return net


def vgg_like(seed=0):
    """conv(3->16) IF pool conv(16->4) IF flatten fc IF fc: both im2col paths, a spiking FC."""
    rng = np.random.default_rng(seed)
    net = Sequential(Conv2d(3, 16, 3, 1, 1, rng=rng, dtype=F64), ReLU(), AvgPool2d(2),
                     Conv2d(16, 4, 3, 1, 1, rng=rng, dtype=F64), ReLU(), Flatten(),
                     Linear(4 * 2 * 2, 6, rng=rng, dtype=F64), ReLU(), Linear(6, 3, rng=rng, dtype=F64))
    return _random_biases(net, rng)


def resnet_like(seed=0):
    """stem conv IF, an identity block, a block with a projection shortcut, pool, fc."""
    rng = np.random.default_rng(seed)
    net = Sequential(Conv2d(3, 16, 3, 1, 1, rng=rng, dtype=F64), ReLU(),
                     BasicBlock(16, 16, 1, rng=rng, dtype=F64), BasicBlock(16, 8, 2, rng=rng, dtype=F64),
                     AvgPool2d(1), Flatten(), Linear(8 * 2 * 2, 3, rng=rng, dtype=F64))
    return _random_biases(net, rng)


def block_first(seed=0):
    """A block first: no linear prefix, so direct coding feeds the image at every step."""
    rng = np.random.default_rng(seed)
    net = Sequential(BasicBlock(3, 4, 2, rng=rng, dtype=F64), AvgPool2d(2), Flatten(),
                     Linear(4, 3, rng=rng, dtype=F64))
    return _random_biases(net, rng)


NETS = {"vgg": vgg_like, "resnet": resnet_like, "block_first": block_first}


def images(n=3, hw=4, seed=1):
    """Normalised images (N, 3, hw, hw) whose intensities lie in [0, 1]."""
    u = np.random.default_rng(seed).random((n, 3, hw, hw))
    return (u - np.reshape(MEAN, (1, 3, 1, 1))) / np.reshape(STD, (1, 3, 1, 1))


def converted(name, seed=0, p=0.9):
    net = NETS[name](seed)
    x = images()
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=p)
    return net, snn, x


def node_shapes(snn, x):
    return [rec["v_T"].shape[1:] for rec in simulate(snn, x, 1, keep_v=True).layers]


def make_v0(snn, x, kind, seed=0):
    """v(0) per node: scalar, per channel ((C, 1, 1) or (F,)), or per neuron, in [-V_th, V_th]."""
    rng = np.random.default_rng(seed)
    out = []
    for node, shape in zip(snn.nodes, node_shapes(snn, x)):
        th = float(np.max(node.v_th))
        if kind == "scalar":
            out.append(0.4 * th)
        elif kind == "channel":
            cshape = (shape[0],) + (1,) * (len(shape) - 1)
            out.append(rng.uniform(-th, th, cshape))
        else:
            out.append(rng.uniform(-th, th, shape))
    return out


# --------------------------------------------------------------------------- fast == reference
@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("coding", ["direct", "rate"])
@pytest.mark.parametrize("v0_kind", ["scalar", "channel", "neuron"])
def test_engine_matches_step_by_step_reference(name, coding, v0_kind):
    net, snn, x = converted(name)
    snn.set_v0(make_v0(snn, x, v0_kind))
    T = 13                                            # chunks of 3 and 8 leave a partial chunk
    kw = dict(coding=coding, mean=MEAN, std=STD, seed=5)
    ref = simulate_reference(snn, x, T, record=True, **kw)
    assert sum(int(rec["spike_count"].sum()) for rec in ref.layers) > 0     # not a silent net
    for chunk in (1, 3, 8, T):
        res = simulate(snn, x, T, chunk=chunk, record=True, **kw)
        for a, b in zip(res.layers, ref.layers):
            np.testing.assert_array_equal(a["spike_count"], b["spike_count"])
            np.testing.assert_array_equal(a["first_spike"], b["first_spike"])
            np.testing.assert_allclose(a["v_T"], b["v_T"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(res.output, ref.output, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(NETS)), seed=st.integers(0, 10_000), T=st.integers(1, 20),
       data=st.data(), coding=st.sampled_from(["direct", "rate"]), p=st.floats(0.5, 1.0))
def test_engine_matches_reference_for_any_chunk(name, seed, T, data, coding, p):
    chunk = data.draw(st.integers(1, T))
    net = NETS[name](seed)
    x = images(n=2, seed=seed)
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=p)
    snn.set_v0(make_v0(snn, x, data.draw(st.sampled_from(["scalar", "channel", "neuron"])), seed))
    kw = dict(coding=coding, mean=MEAN, std=STD, seed=seed)
    ref = simulate_reference(snn, x, T, record=True, **kw)
    res = simulate(snn, x, T, chunk=chunk, record=True, **kw)
    for a, b in zip(res.layers, ref.layers):
        np.testing.assert_array_equal(a["spike_count"], b["spike_count"])
    np.testing.assert_allclose(res.output, ref.output, rtol=1e-10, atol=1e-10)


def test_reference_is_sensitive_to_v0():
    """The comparison above is not vacuous: v(0) changes the spikes."""
    net, snn, x = converted("vgg")
    a = simulate_reference(snn, x, 8, record=True)
    snn.set_v0(make_v0(snn, x, "neuron"))
    b = simulate_reference(snn, x, 8, record=True)
    assert any((ra["spike_count"] != rb["spike_count"]).any() for ra, rb in zip(a.layers, b.layers))


# --------------------------------------------------------------------------- Eq. 11 end to end
def tiny_two_layer(seed):
    rng = np.random.default_rng(seed)
    net = Sequential(Conv2d(2, 3, 3, 1, 1, rng=rng, dtype=F64), ReLU(), Flatten(),
                     Linear(3 * 3 * 3, 4, rng=rng, dtype=F64), ReLU(), Linear(4, 2, rng=rng, dtype=F64))
    return _random_biases(net, rng)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 40), v0_scale=st.floats(0.0, 50.0),
       th=st.tuples(st.floats(0.1, 3.0), st.floats(0.1, 3.0)), coding=st.sampled_from(["direct", "rate"]))
def test_eq11_holds_for_every_node_of_a_simulation(seed, T, v0_scale, th, coding):
    """decoded = spike_count V_th / T equals the time-averaged input current + (v0 - v_T)/T,
    where the input current of node l is the affine map between nodes applied to the decoded
    output of node l-1 (its time average, by linearity) or to the time-averaged input."""
    net = tiny_two_layer(seed)
    rng = np.random.default_rng(seed + 1)
    u = rng.random((2, 2, 3, 3))
    mean, std = (0.5, 0.4), (0.3, 0.2)
    x = (u - np.reshape(mean, (1, 2, 1, 1))) / np.reshape(std, (1, 2, 1, 1))
    snn = convert(net)
    for node, t in zip(snn.nodes, th):
        node.v_th = t
    v0s = [rng.normal(0, 1, (3, 1, 1)) * v0_scale, rng.normal(0, 1, (4,)) * v0_scale]
    snn.set_v0(v0s)
    res = simulate(snn, x, T, coding=coding, chunk=3, record=True, mean=mean, std=std, seed=seed)
    if coding == "direct":
        h = x
    else:  # the time average of the coded input the engine saw
        h = rate_encode(x, mean, std, 0, T, seed).reshape((T,) + x.shape).mean(axis=0)
    flat = snn.flat
    pos = [flat.index(n) for n in snn.nodes]
    start = 0
    for i, (node, rec) in enumerate(zip(snn.nodes, res.layers)):
        for m in flat[start:pos[i]]:
            h = m.forward(h)                          # W (r_prev V_th_prev) + b
        v0 = np.broadcast_to(v0s[i], rec["v_T"].shape)
        rhs = h + (v0 - rec["v_T"]) / T
        np.testing.assert_allclose(rec["decoded"], rhs, rtol=0, atol=1e-9 * (1 + v0_scale))
        np.testing.assert_allclose(rec["decoded"], rec["spike_count"] * node.v_th / T)
        assert rec["spike_count"].max() <= T
        h, start = rec["decoded"], pos[i] + 1
    # the output is the readout of the last node's decoded output (the non-spiking layer)
    for m in flat[start:]:
        h = m.forward(h)
    np.testing.assert_allclose(res.output, h, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- records
def test_records_first_spike_counts_and_firing_rate():
    net, snn, x = converted("resnet")
    T = 16
    res = simulate(snn, x, T, chunk=4, record=True)
    spikes = 0
    for node, rec in zip(snn.nodes, res.layers):
        c, f = rec["spike_count"], rec["first_spike"]
        assert c.shape == f.shape == rec["v_T"].shape == rec["decoded"].shape
        assert c.min() >= 0 and c.max() <= T
        assert np.all((f == 0) == (c == 0))                      # 0 exactly where it never fired
        assert np.all((f >= 1) & (f <= T) | (c == 0))
        assert np.all(f <= T - c + 1)                             # room for c spikes after f
        spikes += int(c.sum())
    assert res.spikes == [int(r["spike_count"].sum()) for r in res.layers]
    assert res.neurons == [int(np.prod(r["v_T"].shape[1:])) for r in res.layers]
    assert res.firing_rate() == pytest.approx(spikes / (x.shape[0] * T * sum(res.neurons)))
    counted = simulate(snn, x, T, count=True)
    assert counted.spikes == res.spikes and counted.layers == []
    assert isinstance(res, SimResult) and res.T == T


def test_first_spike_matches_a_hand_simulated_neuron():
    """A 1x1 conv with weight 1 drives each IF neuron with the pixel value: constant current c
    from v0 = 0 first fires at the first t with t*c > V_th, i.e. floor(V_th/c) + 1."""
    net = Sequential(Conv2d(1, 1, 1, dtype=F64), ReLU(), Flatten(), Linear(4, 2, dtype=F64))
    net[0].params["weight"][...] = 1.0
    x = np.array([0.3, 0.25, -0.5, 2.0], F64).reshape(1, 1, 2, 2)
    snn = convert(net)
    snn.nodes[0].v_th = 1.0
    res = simulate(snn, x, 8, chunk=3, record=True)
    rec = res.layers[0]
    np.testing.assert_array_equal(rec["first_spike"].ravel(), [4, 5, 0, 1])
    np.testing.assert_array_equal(rec["spike_count"].ravel(), [2, 1, 0, 8])


def test_keep_v_keeps_only_v_T():
    net, snn, x = converted("vgg")
    res = simulate(snn, x, 5, keep_v=True)
    assert all(set(rec) == {"v_T"} for rec in res.layers) and res.spikes == []


def test_predict_is_the_argmax_of_the_output():
    net, snn, x = converted("vgg")
    np.testing.assert_array_equal(predict(snn, x, 6), simulate(snn, x, 6).output.argmax(axis=1))


# --------------------------------------------------------------------------- input coding
def test_rate_encode_is_seeded_chunk_independent_and_unbiased():
    x = images(n=2, hw=3)
    whole = rate_encode(x, MEAN, STD, 0, 6, seed=3)
    parts = np.concatenate([rate_encode(x, MEAN, STD, 0, 2, seed=3), rate_encode(x, MEAN, STD, 2, 4, seed=3)])
    np.testing.assert_array_equal(whole, parts)
    assert not np.array_equal(whole, rate_encode(x, MEAN, STD, 0, 6, seed=4))
    m, s = np.reshape(MEAN, (1, 3, 1, 1)), np.reshape(STD, (1, 3, 1, 1))
    spikes = whole.reshape((6,) + x.shape) * s + m                   # back to 0/1 spikes
    np.testing.assert_allclose(np.minimum(np.abs(spikes), np.abs(spikes - 1)), 0, atol=1e-6)
    T = 4000
    p = (rate_encode(x[:1], MEAN, STD, 0, T, seed=0) * s + m).mean(axis=0)
    np.testing.assert_allclose(p, x[0] * s[0] + m[0], atol=0.04)    # E[s] = intensity


# --------------------------------------------------------------------------- memory
def _peak(snn, x, T, chunk):
    tracemalloc.start()
    try:
        simulate(snn, x, T, chunk=chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_T():
    """Buffers are bounded by the chunk: T=64 peaks like T=8 at chunk 4, and the measure is
    sensitive (one chunk of 64 steps needs far more)."""
    net, snn, x = converted("vgg")
    x = np.repeat(x, 3, axis=0)
    simulate(snn, x, 4, chunk=4)                      # warm up lazy imports and caches
    p8, p64 = _peak(snn, x, 8, 4), _peak(snn, x, 64, 4)
    assert p64 <= 1.3 * p8 + 64 * 1024
    assert _peak(snn, x, 64, 64) > 3 * p64


# --------------------------------------------------------------------------- backends
def test_engine_on_backend_agrees_with_numpy(xp):
    net, snn, x = converted("resnet")
    snn.set_v0(make_v0(snn, x, "channel"))
    expect = simulate(snn, x, 9, chunk=4, record=True)
    net.to(xp)
    snn.set_v0([to_device(np.asarray(v), xp) for v in snn.get_v0()])
    try:
        res = simulate(snn, to_device(x, xp), 9, chunk=4, record=True)
    finally:
        net.to(np)
    np.testing.assert_allclose(to_host(res.output), to_host(expect.output), rtol=1e-9, atol=1e-9)
    for a, b in zip(res.layers, expect.layers):
        np.testing.assert_array_equal(a["spike_count"], b["spike_count"])


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("T", [0, -3, 2.5, "8", True, None, 8.0])
@pytest.mark.parametrize("engine", [simulate, simulate_reference])
def test_bad_T_is_a_clear_error(T, engine):
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="T must be a positive integer"):
        engine(snn, x, T)


def test_numpy_integer_T_is_accepted():
    net, snn, x = converted("vgg")
    assert simulate(snn, x, np.int64(3)).T == 3


@pytest.mark.parametrize("engine", [simulate, simulate_reference])
def test_unknown_coding_is_a_clear_error(engine):
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="unknown input coding 'poisson'.*direct, rate"):
        engine(snn, x, 4, coding="poisson")


@pytest.mark.parametrize("engine", [simulate, simulate_reference])
def test_rate_coding_without_normalisation_is_a_clear_error(engine):
    """(The reference used to run on NaN inputs: np.asarray(None, float32) is NaN.)"""
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        engine(snn, x, 4, coding="rate")
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        engine(snn, x, 4, coding="rate", mean=MEAN)
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        rate_encode(x, None, STD, 0, 2, 0)


def test_bad_chunk_is_a_clear_error():
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        simulate(snn, x, 4, chunk=0)


def test_wrong_input_shape_is_a_clear_error():
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match=r"expected a normalised batch \(N, 3, H, W\), got \(3, 2, 4, 4\)"):
        simulate(snn, x[:, :2], 4)
    with pytest.raises(ValueError, match="expected a normalised batch"):
        simulate(snn, x[0], 4)
