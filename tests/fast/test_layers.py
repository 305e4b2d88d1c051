"""fast/layers.py and fast/nhwc.py: FastReLU and FastAvgPool2d compute what ReLU and
AvgPool2d compute, in the input's memory order, over threads, into reusable outputs;
``twin`` shares the original's state; ``accelerate`` swaps twins into a tree, parameters
shared, so training the accelerated tree trains the original."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import (F64, avgpool2d_naive, channels_last, gradcheck, layer_zoo, random_biases,
                     tiny_resnet)
from hypothesis import given
from strategies import away_from_zero, conv_cases, pool_cases, seeds

from icsnn_np.fast import threads
from icsnn_np.fast.conv import FastConv2d
from icsnn_np.fast.layers import FastAvgPool2d, FastReLU, accelerate, twin
from icsnn_np.fast.neurons import FastIFNode
from icsnn_np.fast.nhwc import (col2im_nhwc, empty_channels_last, im2col_nhwc, is_channels_last,
                                reusable, to_channels_last)
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU, im2col
from icsnn_np.models import BasicBlock
from icsnn_np.module import Sequential
from icsnn_np.neurons import IFNode
from icsnn_np.optim import SGD, cross_entropy


def same_order(y, x):
    """y is stored in x's memory order: channels-last if x is, else plain C order."""
    return is_channels_last(y) if is_channels_last(x) else y.flags.c_contiguous


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS", 0)


# --------------------------------------------------------------------------- nhwc
def test_channels_last_helpers(rng):
    x = rng.normal(size=(2, 3, 4, 5))
    assert not is_channels_last(x)
    y = to_channels_last(x)
    assert is_channels_last(y) and y.shape == x.shape
    np.testing.assert_array_equal(y, x)
    e = empty_channels_last(np, (2, 3, 4, 5), np.float32)
    assert is_channels_last(e) and e.shape == (2, 3, 4, 5) and e.dtype == np.float32
    assert reusable(y, (1, 3, 4, 5), F64).shape == (1, 3, 4, 5)
    assert reusable(y, (3, 3, 4, 5), F64) is None                  # too few rows
    assert reusable(y, (2, 3, 4, 5), np.float32) is None           # dtype
    assert reusable(x, (2, 3, 4, 5), F64) is None                  # memory order
    assert reusable(None, (2, 3, 4, 5), F64) is None


@given(case=conv_cases(), seed=seeds)
def test_im2col_nhwc_is_the_channel_major_im2col_transposed(case, seed):
    """Same patches, rows (n, i, j), columns (p, q, c); col2im_nhwc is its adjoint."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    k, s, p = case.k, case.stride, case.padding
    cols, Ho, Wo = im2col(x, k, s, p)                                       # (C*k*k, N*Ho*Wo)
    buf = np.zeros((case.n, Ho, Wo, k, k, case.c_in))
    got = im2col_nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), buf, s, p)
    want = cols.reshape(case.c_in, k, k, case.n, Ho, Wo).transpose(3, 4, 5, 1, 2, 0)
    np.testing.assert_array_equal(got, want)
    d = rng.normal(size=got.shape)
    dx = col2im_nhwc(d, np.zeros((case.n, case.h, case.w, case.c_in)), s, p)
    np.testing.assert_allclose(np.sum(got * d), np.sum(x.transpose(0, 2, 3, 1) * dx), rtol=1e-12)


# --------------------------------------------------------------------------- FastReLU
@given(case=conv_cases(), seed=seeds)
def test_fast_relu_equals_relu_and_keeps_the_memory_order(case, seed):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, case.in_shape)
    for inp in (x, channels_last(x)):
        y = FastReLU().forward(inp)
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        assert same_order(y, inp)
    gradcheck(FastReLU(), channels_last(x), rng)


def test_fast_relu_records_and_splits_over_threads(rng, two_workers):
    x = rng.normal(size=(5, 3, 4, 4))
    r = FastReLU().train()
    r.record = []
    y = r.forward(x)
    assert len(r.record) == 1 and r.record[0] is y
    g = rng.normal(size=x.shape)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(r.backward(g), g * (x > 0))


# --------------------------------------------------------------------------- FastAvgPool2d
@given(case=pool_cases(), seed=seeds)
def test_fast_avgpool_equals_naive_reference_and_its_gradients(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    inp = channels_last(x) if case.channels_last else x
    y = FastAvgPool2d(case.k, case.stride).forward(inp)
    assert y.shape == case.out_shape and same_order(y, inp)
    np.testing.assert_allclose(y, avgpool2d_naive(x, case.k, case.stride), rtol=1e-12, atol=1e-12)
    gradcheck(FastAvgPool2d(case.k, case.stride), inp, rng)


def test_fast_avgpool_dx_follows_the_input_memory_order(rng):
    """The conv before a pool gets its gradient in the order it wrote its output."""
    for inp in (rng.normal(size=(2, 3, 4, 4)), channels_last(rng.normal(size=(2, 3, 4, 4)))):
        pool = FastAvgPool2d(2).train()
        y = pool.forward(inp)
        dx = pool.backward(np.ones_like(y))
        assert same_order(dx, inp) and not same_order(dx, inp.copy() if is_channels_last(inp) else channels_last(inp))
        np.testing.assert_allclose(dx, 0.25)


def test_fast_avgpool_writes_into_a_reusable_output(rng, two_workers):
    x_big, x = channels_last(rng.normal(size=(4, 3, 6, 6))), channels_last(rng.normal(size=(3, 3, 6, 6)))
    pool = FastAvgPool2d(2).eval()
    first = pool.forward(x_big)
    y = pool.forward(x, out=first)
    assert np.shares_memory(y, first) and y.shape == (3, 3, 3, 3)
    np.testing.assert_allclose(y, avgpool2d_naive(x, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gate", [False, True])
def test_fast_avgpool_tiles_do_not_change_outputs_or_gradients(rng, monkeypatch, two_workers, gate):
    """One image per tile against one tile per thread slice: the same values bit for bit, in
    float32, and the same gradient after them (with the ReLU gate of a fused mask too)."""
    from icsnn_np.fast import layers as fast_layers
    x = channels_last(rng.normal(size=(7, 5, 6, 6)).astype(np.float32))
    g = rng.normal(size=(7, 5, 3, 3)).astype(np.float32)
    runs = []
    for tile in (1, 1 << 30):
        monkeypatch.setattr(fast_layers, "POOL_TILE_ELEMENTS", tile)
        pool = FastAvgPool2d(2).train()
        pool.relu_input = gate
        runs.append((pool.forward(x), pool.backward(g)))
        assert (fast_layers.pool_tile(g) >= 7) == (tile > 1)  # one image / all per tile
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert not gate or np.all(runs[0][1][x <= 0] == 0)


# --------------------------------------------------------------------------- twin, accelerate
def test_twin_shares_the_state_of_the_original():
    conv, relu, pool, node = Conv2d(3, 4, 3), ReLU(), AvgPool2d(2, 1), IFNode(v_th=0.7, v0=0.1, name="n")
    for m, cls in ((conv, FastConv2d), (relu, FastReLU), (pool, FastAvgPool2d), (node, FastIFNode)):
        t = twin(m)
        assert type(t) is cls and t is not m
        assert t.params is m.params and t.grads is m.grads and t.children is m.children
    assert twin(pool).stride == 1 and twin(node).v_th == 0.7 and twin(node).name == "n"
    lin, flat = Linear(2, 2), Flatten()
    assert twin(lin) is lin and twin(flat) is flat                   # no twin: kept
    fast = twin(conv)
    assert twin(fast) is fast                                        # already fast


@pytest.mark.parametrize("algo", ["auto", "im2col"])
def test_accelerate_swaps_every_leaf_and_shares_parameters(algo):
    net = tiny_resnet(0)
    fast = accelerate(net, algo)
    before = [type(m) for _, m in net.named_modules()]
    assert [n for n, _ in fast.named_modules()] == [n for n, _ in net.named_modules()]
    for (_, a), (_, b) in zip(net.named_modules(), fast.named_modules()):
        if isinstance(a, (Conv2d, ReLU, AvgPool2d)):
            assert type(b) is not type(a) and isinstance(b, type(a))
            assert b.params is a.params
            if isinstance(b, FastConv2d):
                assert b.algo == algo
        elif isinstance(a, (BasicBlock, Sequential)):
            assert type(b) is type(a) and b is not a
        else:
            assert b is a
    assert [type(m) for _, m in net.named_modules()] == before      # the original untouched
    for (_, ma, ka), (_, mb, kb) in zip(net.named_parameters(), fast.named_parameters()):
        assert mb.params[kb] is ma.params[ka]


def test_accelerated_network_computes_and_trains_like_the_teaching_one(rng, two_workers):
    """Forward, backward and one SGD step through the twins: the teaching network's output
    and updated weights (float64, to rounding). The update lands in the original's arrays."""
    x = rng.normal(size=(4, 3, 8, 8))
    y = rng.integers(0, 5, size=4)
    results = []
    for fast in (False, True):
        model = layer_zoo(3)
        net = accelerate(model) if fast else model
        opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
        outs = []
        for _ in range(2):
            net.train()
            net.zero_grad()
            logits = net.forward(x)
            loss, dlogits = cross_entropy(logits, y)
            net.backward(dlogits, input_grad=False)
            opt.step()
            outs.append(np.array(logits))
        results.append((outs, {k: np.array(v) for k, v in model.state_dict().items()}))
    (o_ref, w_ref), (o_fast, w_fast) = results
    for a, b in zip(o_fast, o_ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for k in w_ref:
        np.testing.assert_allclose(w_fast[k], w_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert not np.array_equal(w_ref["0.weight"], layer_zoo(3).state_dict()["0.weight"])


def test_twin_sees_later_edits_of_the_original(rng):
    """Shared, not copied: an edit of the original after the twin was made reaches it."""
    conv = Conv2d(2, 2, 1, dtype=F64)
    fast = twin(conv)
    random_biases(conv, rng)
    assert np.any(fast.params["bias"])


# --------------------------------------------------------------------------- backends
def test_fast_layers_on_backend_agree_with_numpy(xp, rng):
    """The accelerated layer zoo (fast convs, both im2col paths and Winograd, pools, ReLUs,
    residual blocks) forward and backward on the device: NumPy's outputs and gradients."""
    from icsnn_np.backend import to_device, to_host
    x, R = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 5))

    def run(xp_):
        model = layer_zoo(7).to(xp_)
        net = accelerate(model).train()
        net.zero_grad()
        out = net.forward(to_device(x, xp_))
        dx = net.backward(to_device(R, xp_))
        return [to_host(out), to_host(dx)] + [to_host(m.grads[k]) for _, m, k in model.named_parameters()]

    for a, b in zip(run(xp), run(np)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("algo", ["auto", "im2col"])
def test_relu_masks_fused_into_the_next_layers_backward_give_the_same_gradients(rng, two_workers, algo):
    """A ReLU that feeds a conv or a pool keeps no mask; that layer's backward multiplies its
    dx by (x > 0): bit for bit the gradients of the unfused twins, in float32 too."""
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, size=4)
    grads = []
    for fuse in (True, False):
        model = layer_zoo(3, dtype=np.float32)
        net = accelerate(model, algo)
        kids = list(net.children.values())
        assert [type(k).__name__ for k in kids[:5]] == ["FastConv2d", "FastReLU", "FastConv2d",
                                                         "FastReLU", "FastAvgPool2d"]
        assert kids[1].fused and kids[2].relu_input and kids[3].fused and kids[4].relu_input
        assert not kids[0].relu_input
        if not fuse:
            for _, m in net.named_modules():
                m.fused = m.relu_input = False
        net.train()
        net.zero_grad()
        _, dlogits = cross_entropy(net.forward(x), y)
        dx = net.backward(dlogits)
        assert (kids[1]._mask is None) == fuse
        grads.append((dx, {f"{n}.{k}": np.array(m.grads[k]) for n, m, k in model.named_parameters()}))
    (dx_f, g_f), (dx_u, g_u) = grads
    np.testing.assert_array_equal(dx_f, dx_u)
    assert g_f.keys() == g_u.keys() and len(g_f) > 4
    for k in g_f:
        np.testing.assert_array_equal(g_f[k], g_u[k], err_msg=k)
