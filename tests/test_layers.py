"""Layers: fast kernels equal their naive references (STYLE 6), backprop equals central
differences in float64 (STYLE 7), every backend agrees with NumPy (STYLE 9), bad shapes are
clear errors.

Gradient checks use the scalar loss L = sum(out * R) for a fixed random R, so dL/dout = R.
Every layer here is piecewise linear in each single input or parameter (bilinear in x and
W), so central differences are exact up to rounding as long as a perturbation does not
carry a ReLU pre-activation across 0; such a perturbation is detected (a ReLU mask changes)
and that coordinate is left out rather than reported as a failure.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from strategies import (away_from_zero, block_cases, conv_cases, float_arrays, linear_cases,
                        pool_cases, seeds, wide_conv_cases)

from icsnn_np.backend import to_device, to_host
from icsnn_np.layers import (AvgPool2d, BasicBlock, Conv2d, Flatten, Linear, ReLU, Sequential,
                             avgpool2d_naive, conv2d_naive)

F64 = np.float64
EPS = 1e-5            # perturbation; exact for piecewise-linear maps, small enough to rarely cross a kink
RTOL = 1e-6           # max |analytic - numeric| / max |gradient| over the checked coordinates
MAX_COORDS = 64       # coordinates checked one by one per tensor (plus one random direction)


# --------------------------------------------------------------------------- helpers
def random_biases(module, rng, scale=0.3):
    """Give every bias a random value (they start at 0, which would hide bias bugs)."""
    for _, m in module.named_modules():
        if "bias" in m.params:
            m.params["bias"][...] = rng.normal(0, scale, m.params["bias"].shape)
    return module


def channels_last(x):
    """The same (N, C, H, W) values stored as an (N, H, W, C) buffer (what a conv returns)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def conv_direct(x, w, b, stride, padding):
    """Eq. of a 2-D cross-correlation, in float64 with windows + einsum (no loops, no im2col):
    y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * xpad[n, c, i*s+p, j*s+q]."""
    k = w.shape[-1]
    xpad = np.pad(np.asarray(x, F64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xpad, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (N,C,Ho,Wo,k,k)
    y = np.einsum("nchwpq,ocpq->nohw", win, np.asarray(w, F64))
    return y if b is None else y + np.asarray(b, F64)[None, :, None, None]


class GradCheck:
    """Compare a module's backward with central differences of L = sum(forward(x) * R)."""

    def __init__(self, module, x, rng):
        self.module, self.x, self.rng = module.train(), x, rng
        self.relus = [m for _, m in module.named_modules() if isinstance(m, ReLU)]
        module.zero_grad()                      # grads accumulate (+=)
        out = module.forward(x)
        self.R = rng.normal(size=out.shape)
        self.base_masks = self._masks()
        self.dx = np.array(module.backward(self.R))
        self.grads = {name: np.array(m.grads[k]) for name, m, k in module.named_parameters()}
        assert self.dx.shape == x.shape
        self.checked = self.attempted = 0

    def _masks(self):
        return [r._mask.copy() for r in self.relus]

    def _loss(self):
        """L at the current values, or None when some ReLU changed side (a kink was crossed)."""
        loss = float(np.sum(self.module.forward(self.x) * self.R))
        if any(not np.array_equal(a, b) for a, b in zip(self._masks(), self.base_masks)):
            return None
        return loss

    def _numeric(self, arr, direction):
        """(L(a + eps d) - L(a - eps d)) / 2 eps, perturbing ``arr`` in place; None at a kink."""
        old = arr.copy()
        arr += EPS * direction
        lp = self._loss()
        arr[...] = old - EPS * direction
        lm = self._loss()
        arr[...] = old
        return None if lp is None or lm is None else (lp - lm) / (2 * EPS)

    def check(self, arr, analytic, label):
        assert analytic.shape == arr.shape, label
        n = arr.size
        coords = self.rng.choice(n, size=min(n, MAX_COORDS), replace=False)
        got, want = [], []
        for c in coords:
            d = np.zeros(arr.shape)
            d.flat[c] = 1.0
            num = self._numeric(arr, d)
            if num is not None:
                got.append(analytic.flat[c])
                want.append(num)
        d = self.rng.normal(size=arr.shape)          # one random direction: every coordinate
        num = self._numeric(arr, d)
        if num is not None:
            got.append(np.sum(analytic * d))
            want.append(num)
        self.attempted += len(coords) + 1
        got, want = np.array(got), np.array(want)
        scale = max(np.abs(want).max(initial=0), np.abs(got).max(initial=0), 1e-8)
        err = np.abs(got - want).max(initial=0) / scale
        assert err < RTOL, f"{label}: relative error {err:.3g}\nanalytic {got}\nnumeric  {want}"
        self.checked += len(got)

    def check_all(self):
        """Input gradient and every parameter gradient."""
        self.check(self.x, self.dx, "input")
        for name, m, k in self.module.named_parameters():
            self.check(m.params[k], self.grads[name], name)
        # a kink crossing is rare with EPS this small: nearly every coordinate is checked
        assert self.checked >= self.attempted // 2, f"only {self.checked}/{self.attempted} checked"


def gradcheck(module, x, rng):
    GradCheck(module, x, rng).check_all()


# --------------------------------------------------------------------------- Conv2d forward
@given(case=conv_cases(), seed=seeds)
def test_conv_equals_naive_reference(case, seed):
    rng = np.random.default_rng(seed)
    conv = random_biases(Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                                rng=rng, dtype=F64), rng)
    x = rng.normal(size=case.in_shape)
    y = conv.forward(x)
    assert y.shape == case.out_shape
    want = conv2d_naive(x, conv.params["weight"], conv.params["bias"], case.stride, case.padding)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@given(case=wide_conv_cases(), seed=seeds)
def test_channels_last_conv_equals_naive_reference(case, seed):
    rng = np.random.default_rng(seed)
    conv = random_biases(Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                                rng=rng, dtype=F64), rng)
    x = rng.normal(size=case.in_shape)
    want = conv2d_naive(x, conv.params["weight"], conv.params["bias"], case.stride, case.padding)
    for inp in (x, channels_last(x)):               # either memory order gives the same values
        np.testing.assert_allclose(conv.forward(inp), want, rtol=1e-12, atol=1e-12)


@given(case=conv_cases(), data=st.data())
def test_conv_on_drawn_values_equals_naive_reference(case, data):
    """Element-by-element drawn values (shrinkable to a minimal failing input)."""
    x = data.draw(float_arrays(case.in_shape, -3, 3))
    conv = Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                  rng=np.random.default_rng(0), dtype=F64)
    conv.params["bias"][...] = data.draw(float_arrays((case.c_out,), -1, 1))
    want = conv2d_naive(x, conv.params["weight"], conv.params["bias"], case.stride, case.padding)
    np.testing.assert_allclose(conv.forward(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c_in, c_out, k, stride, padding",
                         [(3, 16, 3, 1, 1), (3, 8, 3, 2, 1), (20, 12, 3, 1, 1),
                          (20, 12, 3, 2, 1), (32, 16, 1, 2, 0), (17, 5, 2, 1, 2)])
def test_float32_conv_matches_the_definition(rng, c_in, c_out, k, stride, padding):
    conv = random_biases(Conv2d(c_in, c_out, k, stride, padding, rng=rng), rng)
    assert conv.params["weight"].dtype == np.float32
    x = rng.normal(size=(2, c_in, 9, 9)).astype(np.float32)
    y = conv.forward(x)
    assert y.dtype == np.float32
    w, b = conv.params["weight"], conv.params["bias"]
    want = conv_direct(x, w, b, stride, padding)
    # float32 rounding scales with the sum of |terms|, i.e. |x| convolved with |w|
    scale = conv_direct(np.abs(x), np.abs(w), np.abs(b), stride, padding)
    assert np.all(np.abs(y - want) <= 1e-5 * scale + 1e-6)


# --------------------------------------------------------------------------- AvgPool2d forward
@pytest.mark.parametrize("overlap", [False, True], ids=["kernel==stride", "overlapping"])
@given(seed=seeds, data=st.data())
def test_avgpool_equals_naive_reference(overlap, seed, data):
    case = data.draw(pool_cases(overlap=overlap))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    inp = channels_last(x) if case.channels_last else x
    y = AvgPool2d(case.k, case.stride).forward(inp)
    assert y.shape == case.out_shape
    np.testing.assert_allclose(y, avgpool2d_naive(x, case.k, case.stride), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- gradient checks
@given(case=conv_cases(), seed=seeds)
def test_conv_gradients(case, seed):
    rng = np.random.default_rng(seed)
    conv = random_biases(Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                                rng=rng, dtype=F64), rng)
    gradcheck(conv, rng.normal(size=case.in_shape), rng)


@given(case=wide_conv_cases(), seed=seeds)
def test_channels_last_conv_gradients(case, seed):
    """>= 16 input channels: the flipped-kernel dx (stride 1) and the col2im dx (stride 2)."""
    rng = np.random.default_rng(seed)
    conv = random_biases(Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                                rng=rng, dtype=F64), rng)
    gradcheck(conv, rng.normal(size=case.in_shape), rng)


@pytest.mark.parametrize("c_in, stride, padding", [(3, 2, 1), (3, 2, 2), (16, 2, 1), (16, 1, 1),
                                                   (16, 1, 0), (16, 2, 0)])
def test_conv_gradients_stride_and_padding(rng, c_in, stride, padding):
    conv = random_biases(Conv2d(c_in, 4, 3, stride, padding, rng=rng, dtype=F64), rng)
    gradcheck(conv, rng.normal(size=(2, c_in, 6, 7)), rng)


def test_conv_without_bias_has_only_a_weight_gradient(rng):
    conv = Conv2d(2, 3, 3, 1, 1, bias=False, rng=rng, dtype=F64)
    assert [n for n, _, _ in conv.named_parameters()] == ["weight"]
    gradcheck(conv, rng.normal(size=(2, 2, 4, 4)), rng)


@given(case=linear_cases, seed=seeds)
def test_linear_gradients(case, seed):
    rng = np.random.default_rng(seed)
    lin = random_biases(Linear(case.d_in, case.d_out, rng=rng, dtype=F64), rng)
    x = rng.normal(size=(case.n, case.d_in))
    np.testing.assert_allclose(lin.forward(x), x @ lin.params["weight"].T + lin.params["bias"],
                               rtol=1e-12, atol=1e-12)
    gradcheck(lin, x, rng)


@given(case=conv_cases(), seed=seeds)
def test_relu_gradient_away_from_zero(case, seed):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, case.in_shape)
    relu = ReLU()
    np.testing.assert_array_equal(relu.forward(x), np.maximum(x, 0))
    gradcheck(relu, x, rng)


@given(case=pool_cases(), seed=seeds)
def test_avgpool_gradient(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    gradcheck(AvgPool2d(case.k, case.stride), channels_last(x) if case.channels_last else x, rng)


@given(case=conv_cases(), seed=seeds)
def test_flatten_gradient_and_order(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    flat = Flatten()
    np.testing.assert_array_equal(flat.forward(x), x.reshape(case.n, -1))   # NCHW order
    gradcheck(flat, x, rng)


@given(case=conv_cases(), seed=seeds)
def test_sequential_gradients(case, seed):
    rng = np.random.default_rng(seed)
    _, o, ho, wo = case.out_shape
    kp = 2 if min(ho, wo) >= 2 else 1
    feat = o * ((ho - kp) // kp + 1) * ((wo - kp) // kp + 1)
    net = random_biases(Sequential(
        Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding, rng=rng, dtype=F64),
        ReLU(), AvgPool2d(kp), Flatten(), Linear(feat, 3, rng=rng, dtype=F64)), rng)
    gradcheck(net, rng.normal(size=case.in_shape), rng)


@pytest.mark.parametrize("projection", [False, True], ids=["identity", "projection"])
@given(data=st.data(), seed=seeds)
def test_basic_block_gradients(projection, data, seed):
    case = data.draw(block_cases(projection))
    rng = np.random.default_rng(seed)
    block = random_biases(BasicBlock(case.c_in, case.c_out, case.stride, rng=rng, dtype=F64), rng)
    assert ("shortcut" in block.children) == case.projection
    gradcheck(block, rng.normal(size=case.in_shape), rng)


@pytest.mark.parametrize("c_in, c_out, stride", [(4, 4, 1), (16, 16, 1), (3, 5, 1), (4, 4, 2),
                                                 (16, 32, 2)])
def test_basic_block_forward_is_the_formula(rng, c_in, c_out, stride):
    """relu(conv2(relu(conv1(x))) + shortcut(x)), shortcut = identity or a 1x1 strided conv."""
    block = random_biases(BasicBlock(c_in, c_out, stride, rng=rng, dtype=F64), rng)
    x = rng.normal(size=(2, c_in, 6, 6))
    c = block.children
    p = lambda name: (c[name].params["weight"], c[name].params["bias"])  # noqa: E731
    h = np.maximum(conv2d_naive(x, *p("conv1"), stride=stride, padding=1), 0)
    h = conv2d_naive(h, *p("conv2"), stride=1, padding=1)
    if "shortcut" in c:
        sc = c["shortcut"][0]
        sc_out = conv2d_naive(x, sc.params["weight"], sc.params["bias"], stride=stride)
    else:
        sc_out = x
    np.testing.assert_allclose(block.forward(x), np.maximum(h + sc_out, 0), rtol=1e-12, atol=1e-12)
    if stride == 1 and c_in == c_out:
        assert "shortcut" not in c
        gradcheck(block, x, rng)


def test_gradients_accumulate_until_zero_grad(rng):
    conv = random_biases(Conv2d(3, 2, 3, 1, 1, rng=rng, dtype=F64), rng)
    x = rng.normal(size=(2, 3, 5, 5))
    R = rng.normal(size=(2, 2, 5, 5))
    conv.zero_grad()
    conv.forward(x)
    conv.backward(R)
    once = {k: v.copy() for k, v in conv.grads.items()}
    conv.forward(x)
    conv.backward(R)
    for k in once:
        np.testing.assert_allclose(conv.grads[k], 2 * once[k], rtol=1e-12)
    conv.zero_grad()
    assert all(not np.any(v) for v in conv.grads.values())


# --------------------------------------------------------------------------- backends
def _backend_net(seed, dtype=F64):
    """A little of everything: few-channel conv, channels-last conv, both block kinds, pool, fc."""
    rng = np.random.default_rng(seed)
    return random_biases(Sequential(
        Conv2d(3, 16, 3, 1, 1, rng=rng, dtype=dtype), ReLU(),
        Conv2d(16, 16, 3, 1, 1, rng=rng, dtype=dtype), ReLU(), AvgPool2d(2),
        BasicBlock(16, 16, 1, rng=rng, dtype=dtype), BasicBlock(16, 8, 2, rng=rng, dtype=dtype),
        AvgPool2d(2, 1), Flatten(), Linear(8, 5, rng=rng, dtype=dtype)), rng)


def test_layers_on_backend_agree_with_numpy(xp, rng):
    x = rng.normal(size=(3, 3, 8, 8))
    ref = _backend_net(7)
    R = rng.normal(size=(3, 5))
    ref.zero_grad()
    want_out = ref.forward(x)
    want_dx = ref.backward(R)
    want_grads = {n: m.grads[k].copy() for n, m, k in ref.named_parameters()}

    net = _backend_net(7).to(xp)
    net.zero_grad()
    out = net.forward(to_device(x, xp))
    dx = net.backward(to_device(R, xp))
    np.testing.assert_allclose(to_host(out), want_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_host(dx), want_dx, rtol=1e-10, atol=1e-12)
    for n, m, k in net.named_parameters():
        np.testing.assert_allclose(to_host(m.grads[k]), want_grads[n], rtol=1e-9, atol=1e-11,
                                   err_msg=n)


def test_to_moves_and_casts_parameters(xp):
    net = _backend_net(1).to(xp, dtype=np.float32)
    for _, m, k in net.named_parameters():
        assert m.params[k].dtype == np.float32 and m.grads[k].dtype == np.float32
        assert type(m.params[k]) is type(xp.zeros(1))
    out = net.forward(to_device(np.ones((1, 3, 8, 8), np.float32), xp))
    assert out.dtype == np.float32 and out.shape == (1, 5)


# --------------------------------------------------------------------------- bad shapes
def test_conv_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Conv2d expects \(N, 3, H, W\), got \(2, 4, 8, 8\)"):
        Conv2d(3, 8, 3).forward(np.zeros((2, 4, 8, 8), np.float32))


def test_conv_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Conv2d expects \(N, 3, H, W\), got \(3, 8, 8\)"):
        Conv2d(3, 8, 3).forward(np.zeros((3, 8, 8), np.float32))


@pytest.mark.parametrize("c_in, shape, k, padding", [(2, (1, 2, 2, 2), 3, 0), (2, (1, 2, 1, 1), 3, 0),
                                                      (20, (1, 20, 2, 2), 3, 0), (2, (1, 2, 1, 4), 5, 1)])
def test_conv_input_smaller_than_kernel_is_a_clear_error(c_in, shape, k, padding):
    with pytest.raises(ValueError, match="Conv2d"):
        Conv2d(c_in, 3, k, 1, padding).forward(np.zeros(shape, np.float32))


def test_linear_wrong_features_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Linear expects \(N, 6\), got \(2, 5\)"):
        Linear(6, 3).forward(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="Linear expects"):
        Linear(6, 3).forward(np.zeros((2, 1, 6), np.float32))


def test_avgpool_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match=r"AvgPool2d expects \(N, C, H, W\), got \(3, 4\)"):
        AvgPool2d(2).forward(np.zeros((3, 4), np.float32))


@pytest.mark.parametrize("shape, k, s", [((1, 2, 1, 1), 2, 2), ((1, 2, 1, 4), 2, 2),
                                         ((1, 2, 2, 2), 3, 1)])
def test_avgpool_input_smaller_than_kernel_is_a_clear_error(shape, k, s):
    with pytest.raises(ValueError, match="AvgPool2d"):
        AvgPool2d(k, s).forward(np.zeros(shape, np.float32))


def test_basic_block_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects \(N, 4, H, W\)"):
        BasicBlock(4, 4).forward(np.zeros((1, 3, 6, 6), np.float32))


@pytest.mark.parametrize("c_in, k, stride", [(3, 3, 1), (16, 3, 1), (16, 3, 2), (3, 1, 1)],
                         ids=["few-channels", "winograd", "strided", "1x1"])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(rng, c_in, k, stride):
    """A training step does not need dL/dx of the data: the first conv skips it, and every
    parameter gradient is what the full backward gives."""
    def net():
        r = np.random.default_rng(5)
        return random_biases(Sequential(Sequential(Conv2d(c_in, 16, k, stride, k // 2, rng=r, dtype=F64),
                                                   ReLU(), Conv2d(16, 4, 3, 1, 1, rng=r, dtype=F64)),
                                        Flatten()), r)
    x = rng.normal(size=(2, c_in, 6, 6))
    a, b = net().train(), net().train()
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    g = rng.normal(size=ya.shape)
    assert a.backward(g, input_grad=False) is None
    assert b.backward(g).shape == x.shape
    for (n, m, key), (_, m2, _) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(m.grads[key], m2.grads[key], err_msg=n)
