"""The teaching layers (layers.py): im2col + one GEMM equals the four-loop definition of a
convolution (STYLE 6), backprop equals central differences in float64 (STYLE 7), every
backend agrees with NumPy (STYLE 9), bad shapes are clear errors.

Gradient checks use the scalar loss L = sum(out * R) for a fixed random R, so dL/dout = R
(``helpers.GradCheck``). The fast twins of these layers are tested in tests/fast/test_conv.py
and tests/fast/test_layers.py; residual blocks (models.BasicBlock) in test_models.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import (F64, avgpool2d_naive, channels_last, check_backward_without_input_grad, conv_direct,
                     gradcheck, layer_zoo, random_biases)
from hypothesis import given
from hypothesis import strategies as st
from strategies import (away_from_zero, conv_cases, float_arrays, linear_cases, pool_cases,
                        seeds)

from icsnn_np.backend import to_device, to_host
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU, col2im, conv_out_size, im2col
from icsnn_np.testing.reference import conv2d_naive
from icsnn_np.module import Sequential


# --------------------------------------------------------------------------- im2col
@given(case=conv_cases(), seed=seeds)
def test_im2col_columns_are_the_zero_padded_patches(case, seed):
    """Column j = n*Ho*Wo + i*Wo + w holds the k x k patch under output pixel (n, i, w), all
    channels, rows ordered (c, p, q) like a flattened OIHW kernel."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    k, s, p = case.k, case.stride, case.padding
    cols, Ho, Wo = im2col(x, k, s, p)
    assert (Ho, Wo) == case.out_shape[2:]
    assert cols.shape == (case.c_in * k * k, case.n * Ho * Wo)
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    for n in range(case.n):
        for i in range(Ho):
            for w in range(Wo):
                patch = xpad[n, :, i * s:i * s + k, w * s:w * s + k]
                np.testing.assert_array_equal(cols[:, (n * Ho + i) * Wo + w], patch.ravel())


@given(case=conv_cases(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    """<im2col(x), d> = <x, col2im(d)> for all x, d: the backward of a copy is a scatter-add."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.in_shape)
    cols, _, _ = im2col(x, case.k, case.stride, case.padding)
    d = rng.normal(size=cols.shape)
    back = col2im(d, x.shape, case.k, case.stride, case.padding)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * d), np.sum(x * back), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, k, s, p, want", [(32, 3, 1, 1, 32), (32, 3, 2, 1, 16), (7, 3, 2, 0, 3),
                                              (5, 1, 2, 0, 3), (3, 5, 1, 1, 1), (2, 3, 1, 0, 0)])
def test_conv_out_size(n, k, s, p, want):
    assert conv_out_size(n, k, s, p) == want
    assert Conv2d(1, 1, k, s, p).out_size(n, n + 1) == (want, conv_out_size(n + 1, k, s, p))


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
    # the same values stored channels-last (as the fast layers leave them) give the same output
    np.testing.assert_allclose(conv.forward(channels_last(x)), want, rtol=1e-12, atol=1e-12)


@given(case=conv_cases(), data=st.data())
def test_conv_on_drawn_values_equals_naive_reference(case, data):
    """Element-by-element drawn values (shrinkable to a minimal failing input)."""
    x = data.draw(float_arrays(case.in_shape, -3, 3))
    conv = Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                  rng=np.random.default_rng(0), dtype=F64)
    conv.params["bias"][...] = data.draw(float_arrays((case.c_out,), -1, 1))
    want = conv2d_naive(x, conv.params["weight"], conv.params["bias"], case.stride, case.padding)
    np.testing.assert_allclose(conv.forward(x), want, rtol=1e-12, atol=1e-12)


def test_naive_conv_is_the_window_definition(rng):
    """The reference itself, against an independent route (windows + einsum)."""
    x, w, b = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    for s, p in ((1, 0), (1, 1), (2, 1), (2, 2)):
        np.testing.assert_allclose(conv2d_naive(x, w, b, s, p), conv_direct(x, w, b, s, p),
                                   rtol=1e-12, atol=1e-12)


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


def test_relu_record_collects_its_outputs(rng):
    relu = ReLU().eval()
    x1, x2 = rng.normal(size=(2, 3)), rng.normal(size=(1, 3))
    relu.forward(x1)                                   # not recorded: record is None
    relu.record = []
    relu.forward(x1)
    relu.forward(x2)
    assert len(relu.record) == 2
    np.testing.assert_array_equal(relu.record[0], np.maximum(x1, 0))
    np.testing.assert_array_equal(relu.record[1], np.maximum(x2, 0))


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


def test_gradients_accumulate_until_zero_grad(rng):
    conv = random_biases(Conv2d(3, 2, 3, 1, 1, rng=rng, dtype=F64), rng)
    x = rng.normal(size=(2, 3, 5, 5))
    R = rng.normal(size=(2, 2, 5, 5))
    conv.zero_grad()
    conv.forward(x)
    conv.backward(R)
    once = {k: v.copy() for k, v in conv.grads.items()}
    assert all(np.any(v) for v in once.values())
    conv.forward(x)
    conv.backward(R)
    for k in once:
        np.testing.assert_allclose(conv.grads[k], 2 * once[k], rtol=1e-12)
    conv.zero_grad()
    assert all(not np.any(v) for v in conv.grads.values())


@pytest.mark.parametrize("c_in, k, stride", [(3, 3, 1), (16, 3, 1), (16, 3, 2), (3, 1, 1)],
                         ids=["few-channels", "16-channels", "strided", "1x1"])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(rng, c_in, k, stride):
    """A training step does not need dL/dx of the data: the first conv skips it, and every
    parameter gradient is what the full backward gives."""
    check_backward_without_input_grad(Conv2d, c_in, k, stride, rng)


# --------------------------------------------------------------------------- backends
def test_layers_on_backend_agree_with_numpy(xp, rng):
    x = rng.normal(size=(3, 3, 8, 8))
    ref = layer_zoo(7)
    R = rng.normal(size=(3, 5))
    ref.zero_grad()
    want_out = ref.forward(x)
    want_dx = ref.backward(R)
    want_grads = {n: m.grads[k].copy() for n, m, k in ref.named_parameters()}

    net = layer_zoo(7).to(xp)
    net.zero_grad()
    out = net.forward(to_device(x, xp))
    dx = net.backward(to_device(R, xp))
    np.testing.assert_allclose(to_host(out), want_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_host(dx), want_dx, rtol=1e-10, atol=1e-12)
    for n, m, k in net.named_parameters():
        np.testing.assert_allclose(to_host(m.grads[k]), want_grads[n], rtol=1e-9, atol=1e-11,
                                   err_msg=n)


def test_to_moves_and_casts_parameters(xp):
    net = layer_zoo(1).to(xp, dtype=np.float32)
    for _, m, k in net.named_parameters():
        assert m.params[k].dtype == np.float32 and m.grads[k].dtype == np.float32
        assert type(m.params[k]) is type(xp.zeros(1))
    out = net.forward(to_device(np.ones((1, 3, 8, 8), np.float32), xp))
    assert out.dtype == np.float32 and out.shape == (1, 5)
    host = layer_zoo(2)                              # a host net loads the device weights
    host.load_state_dict(net.state_dict())
    net.to(np)                                       # and the device net comes back
    for (n, m, k), (_, h, _) in zip(net.named_parameters(), host.named_parameters()):
        assert type(m.params[k]) is np.ndarray and type(m.grads[k]) is np.ndarray
        np.testing.assert_array_equal(m.params[k], h.params[k].astype(np.float32), err_msg=n)
    dev = layer_zoo(3).to(xp)                        # and a device net loads host weights
    dev.load_state_dict(host.state_dict())
    np.testing.assert_array_equal(to_host(dev.forward(to_device(np.ones((1, 3, 8, 8)), xp))),
                                  host.forward(np.ones((1, 3, 8, 8))))


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
    with pytest.raises(ValueError, match="Conv2d: input .* is smaller than the kernel"):
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
    with pytest.raises(ValueError, match="AvgPool2d: input .* is smaller than the window"):
        AvgPool2d(k, s).forward(np.zeros(shape, np.float32))
