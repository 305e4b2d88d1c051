"""ANN -> SNN conversion (weights shared, every ReLU an IF node with its driving layer) and
threshold balancing (the p-quantile of each ReLU's outputs, layer- or channel-wise)."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import F64, tiny_resnet, tiny_vgg

from icsnn_np.convert import layer_threshold
from icsnn_np.beyond import thresholds as thresholds_mod
from icsnn_np.beyond.thresholds import channel_threshold, positive_quantiles
from icsnn_np.backend import to_device, to_host, xp_of
from icsnn_np.io.batchnorm import BatchNorm2d
from icsnn_np.convert import SNN, balance_thresholds, convert, relu_outputs, robust_quantile
from icsnn_np.layers import Conv2d, Flatten, Linear, ReLU
from icsnn_np.models import BasicBlock, resnet20
from icsnn_np.module import Sequential
from icsnn_np.neurons import IFNode
from icsnn_np.simulate import simulate

convert_mod = importlib.import_module("icsnn_np.convert")   # the module (icsnn_np.convert: the function)


def vgg_like(seed=0):
    """conv(3->8) IF pool conv(8->8) IF flatten fc(->6) IF fc(->3), small biases; input 4x4."""
    return tiny_vgg(seed, widths=(8, 8), bias_scale=0.1)


def resnet_like(seed=0):
    """stem conv(3->4) IF, identity block, projection block (4->8), pool 2, fc; zero biases."""
    return tiny_resnet(seed, widths=(4, 8), pool=2, bias_scale=None)


def images(n=6, hw=4, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 3, hw, hw))


def walk(m):
    """Every module of a tree, depth first (IF nodes are leaves with ``children``)."""
    yield m
    for c in m.children.values():
        yield from walk(c)


def weight_layers(tree):
    return [m for m in walk(tree) if isinstance(m, (Conv2d, Linear))]


# --------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("build", [vgg_like, resnet_like, lambda: resnet20(widths=(4, 4, 8), blocks=1)])
def test_convert_shares_weights_and_replaces_every_relu(build):
    net = build()
    relus = [name for name, m in net.named_modules() if isinstance(m, ReLU)]
    snn = convert(net)
    assert isinstance(snn, SNN)
    assert len(snn.nodes) == len(relus)
    assert [n.name for n in snn.nodes] == relus
    assert all(isinstance(n, IFNode) for n in snn.nodes)
    assert not any(isinstance(m, ReLU) for m in walk(snn.tree))
    assert [m for m in walk(snn.tree) if isinstance(m, IFNode)] == snn.nodes
    # the same layer objects and the same arrays: nothing copied
    ann_w, snn_w = weight_layers(net), weight_layers(snn.tree)
    assert len(ann_w) == len(snn_w)
    for a, b in zip(ann_w, snn_w):
        assert a is b
        for k in a.params:
            assert b.params[k] is a.params[k]
    # the ANN itself is left alone (and in eval mode)
    assert [name for name, m in net.named_modules() if isinstance(m, ReLU)] == relus
    assert not any(m.training for _, m in net.named_modules())


def test_weight_sharing_is_live():
    """An in-place change of an ANN weight is seen by the SNN (shared, not copied)."""
    net = vgg_like()
    snn = convert(net)
    x = images()
    before = simulate(snn, x, 4).output.copy()
    net[-1].params["weight"] *= 2.0
    np.testing.assert_allclose(simulate(snn, x, 4).output - net[-1].params["bias"],
                               2.0 * (before - net[-1].params["bias"]))


def test_node_sources_in_plain_stacks_and_blocks():
    net = resnet_like()
    snn = convert(net)
    blocks = [m for m in snn.flat if isinstance(m, BasicBlock)]
    stem = snn.flat[0]
    assert snn.nodes[0].source is stem is net[0]
    for blk, ann_blk in zip(blocks, [net[2], net[3]]):
        c = blk.children
        assert c["relu1"].source is c["conv1"] is ann_blk.children["conv1"]
        assert c["relu2"].source is c["conv2"] is ann_blk.children["conv2"]   # not the shortcut
    vgg = vgg_like()
    s2 = convert(vgg)
    assert [n.source for n in s2.nodes] == [vgg[0], vgg[3], vgg[6]]


def test_snn_bookkeeping():
    net = vgg_like()
    snn = convert(net)
    assert snn.first == 1 and snn.last == 7                     # the readout is the last Linear
    snn.set_v0([0.1, 0.2, 0.3])
    assert [n.v0 for n in snn.nodes] == [0.1, 0.2, 0.3]
    assert [n.v_th for n in snn.nodes] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="expected 3 initial potentials, got 2"):
        snn.set_v0([0.0, 0.0])


def test_snn_tree_supports_module_traversals():
    net = vgg_like()
    snn = convert(net)
    names = [n for n, _ in snn.tree.named_modules()]
    assert [n.name for n in snn.nodes] == [n for n in names if n in ("1", "4", "7")]
    snn.tree.eval()
    assert snn.tree.num_parameters() == net.num_parameters()
    assert list(snn.tree.state_dict()) == list(net.state_dict())


def test_conversion_errors_are_clear():
    with pytest.raises(ValueError, match="no ReLU"):
        convert(Sequential(Conv2d(3, 2, 1), Flatten(), Linear(2, 2)))
    with pytest.raises(ValueError, match="readout after the last spiking layer must be linear.*BatchNorm2d"):
        convert(Sequential(Conv2d(3, 2, 1), ReLU(), BatchNorm2d(2), Flatten(), Linear(2, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_and_named(bad):
    net = vgg_like()
    net[3].params["bias"][1] = bad
    with pytest.raises(ValueError, match=r"weight tensor 3\.bias contains NaN or inf"):
        convert(net)


# --------------------------------------------------------------------------- threshold balancing
@pytest.mark.parametrize("p", [0.6, 0.9, 0.99, 1.0])
def test_layerwise_thresholds_are_the_quantile_of_relu_outputs(p):
    net = vgg_like()
    x = images(8)
    acts = relu_outputs(net, [x[:4], x[4:]])
    snn = convert(net)
    ths = balance_thresholds(snn, net, [x[:4], x[4:]], p=p)
    assert len(ths) == len(acts) == 3
    for node, a, th in zip(snn.nodes, acts, ths):
        assert np.ndim(th) == 0 and th > 0
        assert th == pytest.approx(np.quantile(a, p), rel=1e-6) and node.v_th is th
        if p == 1.0:
            assert th == pytest.approx(a.max(), rel=1e-6)


def test_relu_outputs_are_the_forward_activations():
    net = vgg_like()
    x = images(4)
    acts = relu_outputs(net, [x[:1], x[1:]])
    h = net[0].forward(x)
    np.testing.assert_allclose(acts[0], np.maximum(h, 0))
    assert acts[0].shape == (4, 8, 4, 4) and acts[2].shape == (4, 6)
    assert all(m.record is None for _, m in net.named_modules() if isinstance(m, ReLU))


def test_channelwise_thresholds_shapes_and_values():
    net = vgg_like()
    x = images(8)
    acts = relu_outputs(net, [x])
    snn = convert(net)
    ths = balance_thresholds(snn, net, [x], p=0.9, rule=channel_threshold)
    assert ths[0].shape == (8, 1, 1) and ths[1].shape == (8, 1, 1) and ths[2].shape == (6,)
    for a, th in zip(acts, ths):
        chans = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)          # (C, everything else)
        expect = [np.quantile(c[c > 0], 0.9) if (c > 0).any() else np.quantile(a, 0.9)
                  for c in chans]                                  # of the positive outputs
        np.testing.assert_allclose(th.reshape(-1), expect, rtol=1e-6)
        assert np.all(th > 0)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.01, 2, float("nan")])
def test_p_outside_unit_interval_is_rejected(p):
    net = vgg_like()
    with pytest.raises(ValueError, match=r"quantile p must be a number in \(0, 1\]"):
        balance_thresholds(convert(net), net, [images(2)], p=p)


def test_nan_calibration_activations_are_a_clear_error():
    """A NaN quantile would silently become some threshold: refused, naming the layer."""
    net = vgg_like()
    x = images(3)
    x[0, 1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="calibration batch 0 contains NaN or inf"):
        balance_thresholds(convert(net), net, [x], p=0.9)


def test_a_zero_quantile_stops_the_run_naming_the_layer_and_the_smallest_p():
    """A layer whose p-quantile is 0 is never given another threshold: the run stops with the
    layer, its share of zeros and the p that would work. Channel-wise, a channel that is never
    positive takes the layer's threshold; the others the quantile of their positive outputs."""
    net = Sequential(Conv2d(1, 2, 1, dtype=F64), ReLU(), Flatten(), Linear(8, 2, dtype=F64), ReLU(),
                     Linear(2, 2, dtype=F64))
    conv = net[0]
    conv.params["weight"][...] = np.array([1.0, -1.0]).reshape(2, 1, 1, 1)   # channel 1 dead
    conv.params["bias"][...] = 0.0
    x = np.zeros((4, 1, 2, 2))
    x[:, 0, 0, 0] = [3.0, 2.0, 1.0, 0.5]                                    # 4 of 32 outputs > 0
    snn = convert(net)
    with pytest.raises(ValueError, match=r"the p-quantile is 0 at p = 0.5 in 1: 87.50 % "
                                         r"\(outputs that are 0 .* use a p above 0.8750"):
        balance_thresholds(snn, net, [x], p=0.5)
    net[3].params["weight"][...] = 1.0                                      # layer 4 lives
    th = balance_thresholds(snn, net, [x], p=0.95, rule=channel_threshold)[0].ravel()
    layer = np.quantile(relu_outputs(net, [x])[0], 0.95)
    np.testing.assert_allclose(th, [np.quantile([3.0, 2.0, 1.0, 0.5], 0.95), layer])


def test_a_zero_quantile_names_every_such_layer_and_a_p_that_works_for_all():
    """Every layer is checked before the run stops: the message names each layer whose
    quantile is 0, and the p it gives works for all of them (not only for the first)."""
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(4, 4, 1, dtype=F64), ReLU(), Conv2d(4, 4, 1, dtype=F64), ReLU(), Flatten(),
                     Linear(4, 2, dtype=F64))
    net[0].params["weight"][...] = np.eye(4).reshape(4, 4, 1, 1)
    net[2].params["weight"][...] = np.diag([1.0, 1.0, 1.0, 0.0]).reshape(4, 4, 1, 1)   # one always 0
    for k in (0, 2):
        net[k].params["bias"][...] = 0.0
    x = rng.standard_normal((200, 4, 1, 1))
    acts = relu_outputs(net, [x])
    share = [float(np.mean(a == 0)) for a in acts]
    assert share[1] > share[0] > 0.3
    with pytest.raises(ValueError, match=rf"at p = 0.3 in 1: {100 * share[0]:.2f} %, 3: "
                                         rf"{100 * share[1]:.2f} % .* use a p above {share[1]:.4f}$"):
        balance_thresholds(convert(net), net, [x], p=0.3)
    with pytest.raises(ValueError, match=r"in 3: .* use a p above"):    # layer 1 fine, layer 3 not
        balance_thresholds(convert(net), net, [x], p=(share[0] + share[1]) / 2)
    th = balance_thresholds(convert(net), net, [x], p=round(share[1], 4) + 1e-4)
    assert all(float(t) > 0 for t in th)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), zeros=st.floats(0.0, 0.95), channelwise=st.booleans(),
       ps=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6))
def test_thresholds_never_decrease_with_p(seed, zeros, channelwise, ps):
    """For any activations and any p at which balancing succeeds, V_th is non-decreasing in p,
    layer-wise and channel by channel: no p gets another p's thresholds by a fallback."""
    rng = np.random.default_rng(seed)
    a = rng.gamma(1.2, 1.0, (6, 4, 3, 3)) * (rng.random((6, 4, 3, 3)) > zeros)
    a[:, 3] = 0.0                                                  # a dead channel
    got = []
    for p in sorted(ps):
        try:
            got.append(np.atleast_1d((channel_threshold if channelwise else layer_threshold)(a, p, "relu")).ravel())
        except ValueError as e:
            assert "is 0 at p" in str(e) and np.quantile(a, p) == 0
    assert all(np.all(b >= c) for b, c in zip(got[1:], got[:-1]))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), p=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_robust_quantile_is_numpy_quantile_below_the_cap(n, p, seed):
    a = np.random.default_rng(seed).exponential(size=(3, n))
    assert robust_quantile(a, p) == np.quantile(a, p)
    want = [np.quantile(r[r > 0], p) if (r > 0).any() else np.nan for r in a - 0.5]
    np.testing.assert_allclose(positive_quantiles(a - 0.5, p), want, rtol=1e-12)   # per channel


def test_robust_quantile_subsamples_above_the_cap(monkeypatch):
    monkeypatch.setattr(convert_mod, "MAX_QUANTILE_SAMPLES", 2000)
    a = np.random.default_rng(0).random((4, 5000))
    q = robust_quantile(a, 0.9)
    assert q == robust_quantile(a, 0.9)                    # seeded: reproducible
    assert q != np.quantile(a, 0.9) and q == pytest.approx(0.9, abs=0.03)
    monkeypatch.setattr(thresholds_mod, "MAX_QUANTILE_SAMPLES", 2000)
    qc = positive_quantiles(a, 0.9)
    assert qc.shape == (4,)
    np.testing.assert_allclose(qc, 0.9, atol=0.05)


# --------------------------------------------------------------------------- sanity: T -> large
def test_snn_output_approaches_ann_output_as_T_grows():
    net = vgg_like()
    x = images(8)
    ann = net.forward(x)
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=1.0)
    err = {T: np.abs(simulate(snn, x, T).output - ann).max() for T in (32, 512)}
    scale = np.abs(ann).max()
    assert err[512] < 0.05 * scale
    assert err[512] < err[32] / 4
    np.testing.assert_array_equal(simulate(snn, x, 512).output.argmax(1), ann.argmax(1))


# --------------------------------------------------------------------------- ResNet blocks (Sec. 4.3)
def test_blocks_list_the_if_nodes_of_each_residual_block():
    snn = convert(resnet_like())
    names = [n.name for n in snn.nodes]
    assert names == ["1", "2.relu1", "2.relu2", "3.relu1", "3.relu2"]
    assert snn.blocks == [[1, 2], [3, 4]]
    assert snn.block_first() == [True, True, False, True, False]
    assert convert(vgg_like()).blocks == []


@pytest.mark.parametrize("p", [0.9, 1.0])
def test_per_block_thresholds_are_one_quantile_over_the_whole_block(p):
    net, x = resnet_like(), images(8)
    acts = relu_outputs(net, [x])
    snn = convert(net)
    ths = balance_thresholds(snn, net, [x], p=p, per_block=True)
    assert ths[0] == pytest.approx(np.quantile(acts[0], p))          # not in a block: its own
    for a, b in ([1, 2], [3, 4]):
        both = np.concatenate([acts[a].ravel(), acts[b].ravel()])
        assert ths[a] == ths[b] == pytest.approx(np.quantile(both, p))
    own = balance_thresholds(convert(net), net, [x], p=p)
    assert own[2] == pytest.approx(np.quantile(acts[2], p)) and own[1] != own[2]


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("channelwise", [False, True])
@pytest.mark.parametrize("per_block", [False, True])
def test_threshold_balancing_on_backend_agrees_with_numpy(xp, channelwise, per_block):
    """convert + relu_outputs + balance_thresholds with the weights and the calibration
    batches on the device: the same activations and thresholds as NumPy (channel-wise
    thresholds stay on the device), the same SNN output."""
    x = np.random.default_rng(4).normal(size=(4, 3, 4, 4))
    kw = dict(p=0.9, rule=channel_threshold if channelwise else layer_threshold, per_block=per_block)
    net = tiny_resnet(2)
    snn = convert(net)
    want = balance_thresholds(snn, net, [x[:2], x[2:]], **kw)
    want_acts = relu_outputs(net, [x[:2], x[2:]])
    want_out = simulate(snn, x, 5).output

    dnet = tiny_resnet(2).to(xp)
    dsnn = convert(dnet)
    xd = to_device(x, xp)
    got = balance_thresholds(dsnn, dnet, [xd[:2], xd[2:]], **kw)
    for a, b in zip(relu_outputs(dnet, [xd[:2], xd[2:]]), want_acts):
        assert type(a) is np.ndarray
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        if channelwise:
            assert xp_of(g) is xp
        np.testing.assert_allclose(to_host(g) if hasattr(g, "shape") else g, w, rtol=1e-6)
    np.testing.assert_allclose(to_host(simulate(dsnn, xd, 5).output), want_out, rtol=1e-9, atol=1e-9)
