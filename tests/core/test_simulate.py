"""The step-by-step simulation (simulate.py, the reference engine): Eq. 11 end to end,
records, input coding, bounded memory, backends and clear errors, and no hidden work.
Networks are tiny and float64 (tests/helpers.py). The fast engine is checked equal to this
one in tests/fast/test_fast.py; here only the runner's choice of it (runs/engine.py: same arguments,
same checks)."""
import tracemalloc

import numpy as np
import pytest
from helpers import F64, MEAN, STD, converted, images, make_v0, random_biases, run_sim
from hypothesis import given, settings
from hypothesis import strategies as st

from icsnn_np.backend import to_device, to_host
from icsnn_np.convert import convert
from icsnn_np.layers import Conv2d, Flatten, Linear, ReLU
from icsnn_np.module import Sequential
from icsnn_np.runs.engine import ENGINES
from icsnn_np.simulate import CODINGS, SimResult, rate_encode, simulate


def node_shapes(snn, x):
    return [rec["v_T"].shape[1:] for rec in simulate(snn, x, 1, keep_v=True).layers]


def by_hand(snn, x, T, coding="direct", seed=0):
    """The whole network once per step, written out: spike counts and the output."""
    for node in snn.nodes:
        node.reset(x.shape[0], count=True)
    total = 0
    for t in range(T):
        h = x if coding == "direct" else rate_encode(x, MEAN, STD, t, seed)
        for m in snn.flat:
            h = m.forward(h)
        total = total + h
    return [n.spike_count.copy() for n in snn.nodes], total / T


# --------------------------------------------------------------------------- the step loop
@pytest.mark.parametrize("name", ["vgg", "resnet", "block_first"])
@pytest.mark.parametrize("coding", CODINGS)
def test_simulate_runs_every_layer_once_per_step(name, coding):
    """The reference is the plain loop: each step the whole network on that step's input;
    the output is the time average of the last (non-spiking) layer."""
    net, snn, x = converted(name)
    snn.set_v0(make_v0(snn, node_shapes(snn, x), "channel"))
    res = simulate(snn, x, 7, coding=coding, mean=MEAN, std=STD, seed=3, count=True)
    counts, out = by_hand(snn, x, 7, coding, seed=3)
    assert res.spikes == [int(c.sum()) for c in counts] and sum(res.spikes) > 0
    np.testing.assert_allclose(res.output, out, rtol=1e-12, atol=1e-12)


def test_simulation_is_sensitive_to_v0():
    """v(0) changes the spikes (so tests that compare simulations can fail)."""
    net, snn, x = converted("vgg")
    a = simulate(snn, x, 8, record=True)
    snn.set_v0(make_v0(snn, node_shapes(snn, x), "neuron"))
    b = simulate(snn, x, 8, record=True)
    assert any((ra["spike_count"] != rb["spike_count"]).any() for ra, rb in zip(a.layers, b.layers))


# --------------------------------------------------------------------------- Eq. 11 end to end
def tiny_two_layer(seed):
    rng = np.random.default_rng(seed)
    net = Sequential(Conv2d(2, 3, 3, 1, 1, rng=rng, dtype=F64), ReLU(), Flatten(),
                     Linear(3 * 3 * 3, 4, rng=rng, dtype=F64), ReLU(), Linear(4, 2, rng=rng, dtype=F64))
    return random_biases(net, rng)


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
    res = simulate(snn, x, T, coding=coding, record=True, mean=mean, std=std, seed=seed)
    if coding == "direct":
        h = x
    else:  # the time average of the coded input the engine saw
        h = rate_steps(x, mean, std, 0, T, seed).reshape((T,) + x.shape).mean(axis=0)
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
    res = simulate(snn, x, T, record=True)
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
    res = simulate(snn, x, 8, record=True)
    rec = res.layers[0]
    np.testing.assert_array_equal(rec["first_spike"].ravel(), [4, 5, 0, 1])
    np.testing.assert_array_equal(rec["spike_count"].ravel(), [2, 1, 0, 8])


def test_keep_v_keeps_only_v_T():
    net, snn, x = converted("vgg")
    res = simulate(snn, x, 5, keep_v=True)
    assert all(set(rec) == {"v_T"} for rec in res.layers) and res.spikes == []


# --------------------------------------------------------------------------- input coding
def rate_steps(x, mean, std, t0, Tc, seed):
    """Steps t0+1 .. t0+Tc of rate coding, stacked: (Tc*N, C, H, W), as the fast engine takes them."""
    return np.concatenate([rate_encode(x, mean, std, t, seed) for t in range(t0, t0 + Tc)])


def test_rate_encode_is_seeded_per_step_and_unbiased():
    x = images(n=2, hw=3)
    whole = rate_steps(x, MEAN, STD, 0, 6, seed=3)
    np.testing.assert_array_equal(whole[2 * 2:3 * 2], rate_encode(x, MEAN, STD, 2, seed=3))   # step 3
    assert not np.array_equal(whole, rate_steps(x, MEAN, STD, 0, 6, seed=4))
    m, s = np.reshape(MEAN, (1, 3, 1, 1)), np.reshape(STD, (1, 3, 1, 1))
    spikes = whole.reshape((6,) + x.shape) * s + m                   # back to 0/1 spikes
    np.testing.assert_allclose(np.minimum(np.abs(spikes), np.abs(spikes - 1)), 0, atol=1e-6)
    T = 4000
    p = (rate_steps(x[:1], MEAN, STD, 0, T, seed=0) * s + m).mean(axis=0)
    np.testing.assert_allclose(p, x[0] * s[0] + m[0], atol=0.04)    # E[s] = intensity


# --------------------------------------------------------------------------- memory
def _peak(snn, x, T, **kw):
    tracemalloc.start()
    try:
        (run_sim if kw else simulate)(snn, x, T, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_T():
    """One step's activations at a time: T=64 peaks like T=8, and the measure is sensitive
    (a batch 8x larger needs far more)."""
    net, snn, x = converted("vgg")
    x = np.repeat(x, 3, axis=0)
    simulate(snn, x, 4)                               # warm up lazy imports and caches
    p8, p64 = _peak(snn, x, 8), _peak(snn, x, 64)
    assert p64 <= 1.3 * p8 + 64 * 1024
    assert _peak(snn, np.repeat(x, 8, axis=0), 8) > 3 * p8


def test_fast_engine_memory_is_bounded_by_its_chunk():
    """engine="fast": buffers are bounded by the chunk, not by T (T=64 peaks like T=8 at
    chunk 4), and one chunk of 64 steps needs far more."""
    net, snn, x = converted("vgg")
    x = np.repeat(x, 3, axis=0)
    run_sim(snn, x, 4, engine="fast", chunk=4)
    p8, p64 = _peak(snn, x, 8, engine="fast", chunk=4), _peak(snn, x, 64, engine="fast", chunk=4)
    assert p64 <= 1.3 * p8 + 64 * 1024
    assert _peak(snn, x, 64, engine="fast", chunk=64) > 3 * p64


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("coding", CODINGS)
def test_engine_on_backend_agrees_with_numpy(xp, engine, coding):
    """Both engines, both codings, per-channel v(0) on the device: the output, the records
    and the spike totals equal the NumPy run's (float64)."""
    net, snn, x = converted("resnet")
    v0 = make_v0(snn, node_shapes(snn, x), "channel")
    kw = dict(engine=engine, coding=coding, mean=MEAN, std=STD, seed=3, chunk=4)
    snn.set_v0(v0)
    expect = run_sim(snn, x, 9, record=True, **kw)
    expect_count = run_sim(snn, x, 9, count=True, **kw)
    net.to(xp)
    snn.set_v0([to_device(np.asarray(v), xp) for v in v0])
    try:
        res = run_sim(snn, to_device(x, xp), 9, record=True, **kw)
        count = run_sim(snn, to_device(x, xp), 9, count=True, **kw)
        keep = run_sim(snn, to_device(x, xp), 9, keep_v=True, **kw)
        pred = to_host(run_sim(snn, to_device(x, xp), 9, **kw).output.argmax(axis=1))
    finally:
        net.to(np)
    np.testing.assert_allclose(to_host(res.output), to_host(expect.output), rtol=1e-9, atol=1e-9)
    for a, b, k in zip(res.layers, expect.layers, keep.layers):
        assert set(a) == set(b) and all(type(v) is np.ndarray for v in a.values())
        for key in ("spike_count", "first_spike"):
            np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_allclose(a["v_T"], b["v_T"], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a["decoded"], b["decoded"], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(k["v_T"], b["v_T"], rtol=1e-9, atol=1e-9)
    assert count.spikes == expect_count.spikes == res.spikes
    assert count.neurons == expect_count.neurons
    assert count.firing_rate() == expect_count.firing_rate()
    assert type(pred) is np.ndarray
    np.testing.assert_array_equal(pred, expect.output.argmax(axis=1))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("T", [0, -3, 2.5, "8", True, None, 8.0])
@pytest.mark.parametrize("engine", ENGINES)
def test_bad_T_is_a_clear_error(T, engine):
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="T must be a positive integer"):
        run_sim(snn, x, T, engine=engine)


def test_numpy_integer_T_is_accepted():
    net, snn, x = converted("vgg")
    assert simulate(snn, x, np.int64(3)).T == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_coding_is_a_clear_error(engine):
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="unknown input coding 'poisson'.*direct, rate"):
        run_sim(snn, x, 4, coding="poisson", engine=engine)


def test_unknown_engine_is_a_clear_error():
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="unknown engine 'turbo'; choose one of reference, fast"):
        run_sim(snn, x, 4, engine="turbo")


@pytest.mark.parametrize("engine", ENGINES)
def test_rate_coding_without_normalisation_is_a_clear_error(engine):
    """(The reference used to run on NaN inputs: np.asarray(None, float32) is NaN.)"""
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        run_sim(snn, x, 4, coding="rate", engine=engine)
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        run_sim(snn, x, 4, coding="rate", mean=MEAN, engine=engine)
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        rate_encode(x, None, STD, 0, 0)


def test_bad_chunk_is_a_clear_error():
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        run_sim(snn, x, 4, engine="fast", chunk=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_input_shape_is_a_clear_error(engine):
    """The core names the channels and the image size the network takes, for either engine."""
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="the input batch: 2-channel images, but the network's first conv takes 3"):
        simulate(snn, x[:, :2], 4)
    with pytest.raises(ValueError, match="the input batch: 2-channel images, but the network's first conv takes 3"):
        run_sim(snn, x[:, :2], 4, engine=engine)
    with pytest.raises(ValueError, match=r"the input batch: the network expects 4\u00d74 images \(\d+ features "
                                         r"at its first Linear\), got 8\u00d78"):
        run_sim(snn, np.concatenate([x, x], axis=2).repeat(2, axis=3)[:, :, :8], 4, engine=engine)
    with pytest.raises(ValueError, match=r"the input batch must be a normalised batch of images \(N, C, H, W\)"):
        run_sim(snn, x[0], 4, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_input_values_are_clear_errors(engine):
    """An empty batch, raw uint8 images and NaN pixels are refused before any work."""
    net, snn, x = converted("vgg")
    with pytest.raises(ValueError, match=r"the input batch is empty \(0 images\)"):
        run_sim(snn, x[:0], 4, engine=engine)
    with pytest.raises(ValueError, match="is uint8, not a normalised float batch.*normalize"):
        run_sim(snn, (x * 50 + 100).clip(0, 255).astype(np.uint8), 4, engine=engine)
    bad = x.copy()
    bad[1, 2, 0, 3] = np.nan
    with pytest.raises(ValueError, match="the input batch contains NaN or inf"):
        run_sim(snn, bad, 4, engine=engine)


@pytest.mark.parametrize("kw", [dict(), dict(record=True), dict(count=True), dict(keep_v=True)])
def test_fast_engine_is_reached_through_the_runner(kw):
    """runs.engine's ``fast`` returns the same kind of SimResult with the same records (the
    spikes themselves are compared in tests/fast/test_fast.py)."""
    net, snn, x = converted("resnet")
    ref = run_sim(snn, x, 6, **kw)
    fast = run_sim(snn, x, 6, engine="fast", chunk=4, **kw)
    assert isinstance(fast, SimResult) and fast.T == ref.T == 6
    assert fast.output.shape == ref.output.shape
    assert [set(r) for r in fast.layers] == [set(r) for r in ref.layers]
    assert len(fast.spikes) == len(ref.spikes) and fast.neurons == ref.neurons


@pytest.mark.parametrize("via", ["simulate", "runner"])
def test_a_T_step_run_calls_each_if_node_T_times_and_no_more(monkeypatch, via):
    """No hidden forward pass: a T = 2 run of a 6-node VGG calls IFNode.forward exactly 12
    times, through the core ``simulate`` and through the runner, whose memory estimate
    measures layer sizes on a throw-away copy, never on the SNN's nodes."""
    from icsnn_np.models import build_model
    from icsnn_np.neurons import IFNode
    net = build_model("vgg_cpu", dtype=F64)
    snn = convert(net)
    assert len(snn.nodes) == 6
    calls = []
    forward = IFNode.forward
    monkeypatch.setattr(IFNode, "forward", lambda self, c: calls.append(self.name) or forward(self, c))
    x = images(2, hw=32)
    (simulate if via == "simulate" else run_sim)(snn, x, 2)
    assert len(calls) == 12 and sorted(set(calls)) == sorted(n.name for n in snn.nodes)
