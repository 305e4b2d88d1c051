"""Alg. 1, 2, 3 on hand-computed cases, their readings and granularities, the laws they
obey, and clear errors for bad choices. (The variants built from them: test_variants.py.)"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import F64, tiny_resnet_snn, tiny_vgg_snn

from icsnn_np.beyond.fixed_point import fixed_point_init
from icsnn_np.backend import to_device, xp_of
from icsnn_np.convert import convert
from icsnn_np.init_mem import (COMPENSATIONS, GRANULARITIES, READINGS, alg1_weight_init,
                               alg2_data_init, alg3_ic_init, compensation, host,
                               masked, record_v_T)
from icsnn_np.layers import Conv2d, Flatten, Linear, ReLU
from icsnn_np.module import Sequential
from icsnn_np.runs.engine import use_engine


# --------------------------------------------------------------------------- Alg. 1
def linear_net(W, b, T_out=2):
    W = np.asarray(W, F64)
    lin = Linear(W.shape[1], W.shape[0], dtype=F64)
    lin.params["weight"][...] = W
    lin.params["bias"][...] = b
    return Sequential(lin, ReLU(), Linear(W.shape[0], T_out, dtype=F64))


def test_alg1_by_hand():
    """W = [[.3, -.7], [1.2, .5]], b = [.1, -.2], T = 4, V_th = 1:
    W*T + b (bias per output row) = [[1.3, -2.7], [4.6, 1.8]]; % 1 = [[.3, .3], [.6, .8]];
    mean = 0.5."""
    snn = convert(linear_net([[0.3, -0.7], [1.2, 0.5]], [0.1, -0.2]))
    snn.nodes[0].v_th = 1.0
    (v0,) = alg1_weight_init(snn, 4)
    assert v0 == pytest.approx(0.5, abs=1e-6) and np.ndim(v0) == 0
    # V_th = 2: % 2 = [[1.3, 1.3], [.6, 1.8]] -> 1.25
    snn.nodes[0].v_th = 2.0
    assert alg1_weight_init(snn, 4)[0] == pytest.approx(1.25, abs=1e-6)
    # channel-wise V_th (one per output row) [1, 2]: [[.3, .3], [.6, 1.8]] -> 0.75
    snn.nodes[0].v_th = np.array([1.0, 2.0])
    assert alg1_weight_init(snn, 4)[0] == pytest.approx(0.75, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), T=st.integers(1, 256), v_th=st.floats(0.05, 4.0),
       k=st.sampled_from([1, 3]), c=st.integers(1, 3), o=st.integers(1, 3))
def test_alg1_is_the_literal_formula_on_a_conv(data, T, v_th, k, c, o):
    """mean((W*T + b) % V_th) with b broadcast per output channel, a value in [0, V_th)."""
    conv = Conv2d(c, o, k, 1, k // 2, dtype=F64)
    W = data.draw(hnp.arrays(F64, conv.params["weight"].shape, elements=st.floats(-2, 2)))
    b = data.draw(hnp.arrays(F64, (o,), elements=st.floats(-2, 2)))
    conv.params["weight"][...] = W
    conv.params["bias"][...] = b
    snn = convert(Sequential(conv, ReLU(), Flatten(), Linear(o * 4, 2, dtype=F64)))
    snn.nodes[0].v_th = v_th
    (v0,) = alg1_weight_init(snn, T)
    expect = np.mod(W * T + b[:, None, None, None], v_th).mean()
    assert v0 == pytest.approx(expect, rel=1e-5, abs=1e-6)
    assert -1e-6 <= v0 <= v_th * (1 + 1e-6)


def test_alg1_without_bias_and_without_a_source():
    conv = Conv2d(1, 2, 1, bias=False, dtype=F64)
    conv.params["weight"][...] = np.array([0.7, 1.9]).reshape(2, 1, 1, 1)
    snn = convert(Sequential(conv, ReLU(), Flatten(), Linear(2, 2)))
    assert alg1_weight_init(snn, 3)[0] == pytest.approx((0.1 + 0.7) / 2)   # 2.1 % 1, 5.7 % 1
    orphan = convert(Sequential(ReLU(), Flatten(), Linear(2, 2)))
    with pytest.raises(ValueError, match="no weight layer drives this node"):
        alg1_weight_init(orphan, 3)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        alg1_weight_init(snn, 0)


# --------------------------------------------------------------------------- Alg. 2 by hand
def one_node_net():
    """1x1 conv with weights +1 / -1 (no bias) -> IF -> readout: each neuron's constant current
    is +/- its pixel. Inputs: two 1x2 images [.3, .6] and [.9, -.2], V_th = 1, T = 4, v0 = 0.

    v(T) = T c - V_th * spikes:  c = .3 -> .2,  .6 -> .4,  .9 -> .6,  -.2 -> -.8,
                                 c = -.3 -> -1.2, -.6 -> -2.4, -.9 -> -3.6, .2 -> .8
    """
    conv = Conv2d(1, 2, 1, dtype=F64)
    conv.params["weight"][...] = np.array([1.0, -1.0]).reshape(2, 1, 1, 1)
    conv.params["bias"][...] = 0.0
    snn = convert(Sequential(conv, ReLU(), Flatten(), Linear(4, 2, dtype=F64)))
    snn.nodes[0].v_th = 1.0
    x = np.array([[0.3, 0.6], [0.9, -0.2]], F64).reshape(2, 1, 1, 2)
    return snn, [x[:1], x[1:]]                    # two batches of one image


V_T = np.array([[[[0.2, 0.4]], [[-1.2, -2.4]]],
                [[[0.6, -0.8]], [[-3.6, 0.8]]]])                 # (N=2, C=2, H=1, W=2)


def test_recorded_v_T_by_hand():
    snn, batches = one_node_net()
    (v_T,) = record_v_T(snn, batches, 4)
    np.testing.assert_allclose(v_T, V_T, atol=1e-12)


@pytest.mark.parametrize("reading, granularity, expect", [
    ("raw", "layer", -0.75),
    ("remainder", "layer", 0.5),         # mods .2 .4 .8 .6 | .6 .2 .4 .8
    ("clip", "layer", 0.25),             # clips .2 .4 0 0 | .6 0 0 .8
    ("raw", "channel", [[[0.1]], [[-1.6]]]),
    ("remainder", "channel", [[[0.35]], [[0.65]]]),
    ("clip", "channel", [[[0.3]], [[0.2]]]),
    ("raw", "neuron", [[[0.4, -0.2]], [[-2.4, -0.8]]]),
    ("remainder", "neuron", [[[0.4, 0.3]], [[0.6, 0.7]]]),
    ("clip", "neuron", [[[0.4, 0.2]], [[0.0, 0.4]]]),
])
def test_alg2_readings_and_granularities_by_hand(reading, granularity, expect):
    snn, batches = one_node_net()
    (v0,) = alg2_data_init(snn, batches, 4, reading=reading, granularity=granularity)
    expect = np.asarray(expect)
    assert np.shape(v0) == expect.shape == {"layer": (), "channel": (2, 1, 1),
                                            "neuron": (2, 1, 2)}[granularity]
    np.testing.assert_allclose(v0, expect, atol=1e-6)


def test_alg2_channel_and_neuron_on_a_linear_node():
    """For a linear node (F,) is both per channel and per neuron."""
    snn = convert(Sequential(Flatten(), Linear(2, 3, dtype=F64), ReLU(), Linear(3, 2, dtype=F64)))
    x = np.random.default_rng(0).normal(size=(4, 1, 1, 2))
    a = alg2_data_init(snn, [x], 5, granularity="channel")[0]
    b = alg2_data_init(snn, [x], 5, granularity="neuron")[0]
    assert a.shape == b.shape == (3,)
    np.testing.assert_array_equal(a, b)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), T=st.integers(1, 24), v0=st.floats(-2, 2))
def test_alg2_laws(seed, T, v0):
    """raw = mean of the recorded v(T); remainder in [0, V_th); clip in [0, V_th];
    layer = mean of neuron = mean of channel (equal-sized channels)."""
    snn, batches = tiny_vgg_snn(seed)
    snn.set_v0([v0] * 3)
    v_Ts = record_v_T(snn, batches, T)
    raw = alg2_data_init(snn, batches, T, reading="raw")
    rem = alg2_data_init(snn, batches, T, reading="remainder")
    clip = alg2_data_init(snn, batches, T, reading="clip")
    rem_n = alg2_data_init(snn, batches, T, reading="remainder", granularity="neuron")
    rem_c = alg2_data_init(snn, batches, T, reading="remainder", granularity="channel")
    for node, v_T, a, r, c, rn, rc in zip(snn.nodes, v_Ts, raw, rem, clip, rem_n, rem_c):
        th = node.v_th
        assert a == pytest.approx(v_T.mean(), rel=1e-5, abs=1e-6)
        assert 0 <= r <= th and 0 <= c <= th and c <= max(a, 0) + th
        assert np.all(rn >= 0) and np.all(rn <= th)      # float32 may round up to V_th
        assert rn.shape == v_T.shape[1:]
        assert rn.mean() == pytest.approx(r, rel=1e-5, abs=1e-6)
        assert rc.mean() == pytest.approx(r, rel=1e-5, abs=1e-6)
    assert [n.v0 for n in snn.nodes] == [v0] * 3                            # Alg. 2 only reads


# --------------------------------------------------------------------------- compensation and Alg. 3
def test_compensation_literal_and_half():
    snn, _ = tiny_vgg_snn()
    snn.nodes[1].v_th = np.array([0.4, 0.8, 1.2]).reshape(3, 1, 1)
    lit = compensation(snn, 8, "literal")
    half = compensation(snn, 8, "half")
    assert lit[0] == 1.0 / 16 and half[0] == 0.5 and half[2] == 0.3
    np.testing.assert_allclose(lit[1], np.array([0.4, 0.8, 1.2]).reshape(3, 1, 1) / 16)
    np.testing.assert_allclose(half[1], np.array([0.2, 0.4, 0.6]).reshape(3, 1, 1))
    for d, h in zip(compensation(snn, 8), lit):                      # the default is literal
        np.testing.assert_array_equal(d, h)
    with pytest.raises(ValueError, match="unknown compensation 'quarter'"):
        compensation(snn, 8, "quarter")
    with pytest.raises(ValueError, match="T must be a positive integer"):
        compensation(snn, 2.5)


@pytest.mark.parametrize("comp", ["literal", "half"])
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_alg3_is_alg2_run_with_v0_C_plus_C(comp, granularity):
    snn, batches = tiny_vgg_snn()
    T = 8
    C = compensation(snn, T, comp)
    snn.set_v0(C)
    R = alg2_data_init(snn, batches, T, granularity=granularity)
    snn.set_v0([0.0] * 3)
    final = alg3_ic_init(snn, batches, T, comp=comp, granularity=granularity)
    for f, r, c in zip(final, R, C):
        np.testing.assert_allclose(f, r + c, rtol=1e-7)
    # and it differs from Alg. 2 on the plain SNN plus C (Alg. 3 is not "I-SNN + C")
    snn.set_v0([0.0] * 3)
    R0 = alg2_data_init(snn, batches, T, granularity=granularity)
    if comp == "half":
        assert any(not np.allclose(r0, r) for r0, r in zip(R0, R))


def test_alg3_by_hand():
    """One node, half compensation C = 0.5, T = 4: v(T) from v0 = .5 for currents
    .3 .6 | .9 -.2 (channel 0) and -.3 -.6 | -.9 .2 (channel 1):
    .5+1.2 = 1.7 -> .7;  .5+2.4 = 2.9 -> .9;  .5+3.6 = 4.1 -> .1;  .5-.8 = -.3;
    .5-1.2 = -.7;  .5-2.4 = -1.9;  .5-3.6 = -3.1;  .5+.8 = 1.3 -> .3 (fires at step 3)
    remainders .7 .9 .1 .7 | .3 .1 .9 .3 -> mean .5; final = .5 + .5 = 1.0."""
    snn, batches = one_node_net()
    (v0,) = alg3_ic_init(snn, batches, 4, comp="half", reading="remainder")
    assert v0 == pytest.approx(1.0, abs=1e-6)
    (raw,) = alg3_ic_init(snn, batches, 4, comp="half", reading="raw")
    assert raw == pytest.approx((0.7 + 0.9 + 0.1 - 0.3 - 0.7 - 1.9 - 3.1 + 0.3) / 8 + 0.5, abs=1e-6)


# --------------------------------------------------------------------------- fixed point
def test_fixed_point_converges_to_mean_v_T():
    snn, batches = tiny_vgg_snn()
    v0, passes = fixed_point_init(snn, batches, 8, reading="raw", iters=30, tol=1e-4)
    assert 1 <= passes <= 30
    if passes < 30:                          # converged: one more pass moves v0 by < tol*V_th
        snn.set_v0(v0)
        again = alg2_data_init(snn, batches, 8, reading="raw")
        for a, b in zip(again, v0):
            assert abs(a - b) <= 1e-4 * 1.0 + 1e-7


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kw, match", [
    (dict(reading="mean"), "unknown Alg. 2 reading 'mean'; choose one of raw, remainder, clip"),
    (dict(granularity="pixel"), "unknown granularity 'pixel'; choose one of layer, channel, neuron"),
])
def test_alg2_bad_choices_are_clear_errors(kw, match):
    snn, batches = tiny_vgg_snn()
    with pytest.raises(ValueError, match=match):
        alg2_data_init(snn, batches, 4, **kw)


@pytest.mark.parametrize("T", [0, -1, 2.5, "8", True])
def test_bad_T_everywhere(T):
    snn, batches = tiny_vgg_snn()
    for call in (lambda: alg2_data_init(snn, batches, T), lambda: alg1_weight_init(snn, T),
                 lambda: alg3_ic_init(snn, batches, T), lambda: compensation(snn, T),
                 lambda: record_v_T(snn, batches, T)):
        with pytest.raises(ValueError, match="T must be a positive integer"):
            call()


def test_alg2_input_errors_are_clear():
    snn, batches = tiny_vgg_snn()
    with pytest.raises(ValueError, match="at least one batch"):
        alg2_data_init(snn, [], 4)
    snn.coding = {"coding": "latency"}
    with pytest.raises(ValueError, match="unknown input coding"):
        alg2_data_init(snn, batches, 4)
    assert READINGS == ("raw", "remainder", "clip") and GRANULARITIES == ("layer", "channel", "neuron")
    assert COMPENSATIONS == ("literal", "half")


# --------------------------------------------------------------------------- simulation settings
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_alg2_runs_the_engine_and_coding_the_snn_carries(engine):
    """The SNN's engine (plugged in from outside) and input coding reach Alg. 2's runs: rate
    coding changes v(T); both engines read the same."""
    snn, batches = tiny_vgg_snn()
    rate_coding = dict(coding="rate", mean=(0.5, 0.5), std=(0.5, 0.5), seed=3)
    use_engine(snn, engine, chunk=4)
    direct = alg2_data_init(snn, batches, 6, reading="raw")
    use_engine(snn, engine, chunk=4, coding=rate_coding)
    rate = alg2_data_init(snn, batches, 6, reading="raw")
    use_engine(snn, "reference")
    ref = alg2_data_init(snn, batches, 6, reading="raw")
    assert direct != rate
    np.testing.assert_allclose(rate, ref, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- helpers and keep
def test_host_and_masked():
    assert host(0.5) == 0.5 and isinstance(host(0.5), np.ndarray)
    a = np.arange(3.0)
    np.testing.assert_array_equal(host(a), a)
    assert masked([1.0, a, 3.0], None) == [1.0, a, 3.0]
    assert masked([1.0, a, 3.0], [True, False, True]) == [1.0, 0.0, 3.0]


def test_alg3_keep_holds_marked_nodes_at_zero_also_while_measuring():
    """keep=False nodes start at 0 during Alg. 2's run and end at 0; the kept nodes get R + C
    with R measured on that SNN (not on one where every node had its compensation)."""
    snn, batches = tiny_resnet_snn()
    keep = [True, True, False, True, False]
    v0 = alg3_ic_init(snn, batches, 8, comp="half", keep=keep)
    C = compensation(snn, 8, "half")
    assert [float(v) == 0.0 for v in v0] == [not k for k in keep]
    snn.set_v0([c if k else 0.0 for c, k in zip(C, keep)])
    R = alg2_data_init(snn, batches, 8)
    for i in (0, 1, 3):
        assert v0[i] == pytest.approx(R[i] + C[i])
    snn.set_v0(C)                                        # every node compensated: another R
    R_all = alg2_data_init(snn, batches, 8)
    assert any(R_all[i] != pytest.approx(R[i]) for i in (0, 1, 3))


def test_fixed_point_keep_and_start():
    snn, batches = tiny_resnet_snn()
    keep = [True, False, True, False, True]
    v0, passes = fixed_point_init(snn, batches, 6, keep=keep, iters=2, start=[0.1] * 5)
    assert 1 <= passes <= 2
    assert [float(v) == 0.0 for v in v0] == [not k for k in keep]


# --------------------------------------------------------------------------- backends
def _all_inits(snn, batches, xp, granularity, engine):
    """Alg. 1, Alg. 2 (every reading), Alg. 3 and the fixed point: v(0) lists as host arrays."""
    use_engine(snn, engine, chunk=2)
    out = {"alg1": alg1_weight_init(snn, 5)}
    for reading in READINGS:
        snn.set_v0([0.0] * len(snn.nodes))
        out[reading] = alg2_data_init(snn, batches, 5, reading, granularity)
    out["alg3"] = alg3_ic_init(snn, batches, 5, "half", "remainder", granularity)
    out["fp"], out["fp_iters"] = fixed_point_init(snn, batches, 5, "raw", granularity, iters=3)
    for k in ("fp_iters",):
        out[k] = [np.asarray(out[k])]
    for k, v0s in out.items():
        for v in v0s:
            assert np.ndim(v) == 0 or xp_of(v) is xp, k    # array v(0) on the network's device
    return {k: [host(v) for v in v0s] for k, v0s in out.items()}


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_init_mem_on_backend_agrees_with_numpy(xp, granularity, engine):
    """Alg. 1-3 and the fixed point with the network and the batches on the device give
    NumPy's v(0), as device arrays where they are arrays."""
    snn, batches = tiny_vgg_snn()
    want = _all_inits(snn, batches, np, granularity, engine)
    snn.tree.to(xp)
    got = _all_inits(snn, [to_device(b, xp) for b in batches], xp, granularity, engine)
    for k in want:
        for g, w in zip(got[k], want[k]):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=k)
