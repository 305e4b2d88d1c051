"""Winograd F(4x4, 3x3): equals the definition of a convolution (float64: to rounding;
float32: to a few ulps of the sum of |terms|), for every size and block split, forward and
backward; the transform matrices satisfy the identity that makes the algorithm exact."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import seeds
from test_layers import conv_direct, gradcheck, random_biases

from icsnn_np import winograd
from icsnn_np.backend import to_device, to_host
from icsnn_np.layers import Conv2d

F64 = np.float64


def test_matrices_compute_a_1d_correlation_exactly():
    """F(4, 3) in 1-D: A^T [(G g) * (B^T d)] = the 4 outputs of a 3-tap correlation of 6 inputs,
    for every unit d and g (so, by linearity, for all); the 2-D algorithm is its square."""
    for i in range(6):
        for k in range(3):
            d, g = np.eye(6)[i], np.eye(3)[k]
            want = np.array([d[j:j + 3] @ g for j in range(4)])
            got = winograd.A_T @ ((winograd.G @ g) * (winograd.B_T @ d))
            np.testing.assert_allclose(got, want, atol=1e-14)


@st.composite
def cases(draw):
    return dict(n=draw(st.integers(1, 5)), c=draw(st.integers(1, 6)), o=draw(st.integers(1, 5)),
                h=draw(st.integers(1, 13)), w=draw(st.integers(1, 13)), nb=draw(st.integers(1, 4)))


@settings(max_examples=60)
@given(case=cases(), seed=seeds)
def test_conv3x3_equals_the_definition(case, seed):
    """Any image size (tiles that overhang the border), any block size (short last block)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["n"], case["c"], case["h"], case["w"]))
    wt = rng.normal(size=(case["o"], case["c"], 3, 3))
    U = winograd.transform_weights(wt)
    assert U.shape == (36, case["c"], case["o"])
    y = winograd.conv3x3_nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), U, nb=case["nb"])
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), conv_direct(x, wt, None, 1, 1),
                               rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("c_in, c_out, size", [(16, 8, 9), (64, 32, 8), (32, 64, 13)])
def test_float32_error_is_a_few_ulps(rng, c_in, c_out, size):
    """The transforms mix terms with weights up to 8, so the rounding is larger than
    im2col's, but stays within a few float32 ulps of the sum of |terms| (what bounds any
    float32 conv's rounding)."""
    conv = random_biases(Conv2d(c_in, c_out, 3, 1, 1, rng=rng), rng)
    assert conv._winograd()
    x = rng.normal(size=(3, c_in, size, size)).astype(np.float32)
    w, b = conv.params["weight"], conv.params["bias"]
    y = conv.forward(x)
    assert y.dtype == np.float32
    err = np.abs(y - conv_direct(x, w, b, 1, 1))
    scale = conv_direct(np.abs(x), np.abs(w), np.abs(b), 1, 1)
    assert np.all(err <= 1e-5 * scale + 1e-6), float((err / scale).max())


@settings(max_examples=25)
@given(n=st.integers(1, 3), c=st.integers(16, 20), o=st.integers(1, 6), h=st.integers(1, 9),
       w=st.integers(1, 9), seed=seeds)
def test_conv2d_algos_agree_forward_and_backward(n, c, o, h, w, seed):
    """Conv2d's Winograd path (auto) and its im2col path give the same output, input gradient
    and weight/bias gradients (float64)."""
    rng = np.random.default_rng(seed)
    a = random_biases(Conv2d(c, o, 3, 1, 1, rng=rng, dtype=F64), rng)
    b = Conv2d(c, o, 3, 1, 1, dtype=F64)
    b.load_state_dict(a.state_dict())
    b.algo = "im2col"
    assert a._winograd() and not b._winograd()
    x = rng.normal(size=(n, c, h, w))
    ya, yb = a.train().forward(x), b.train().forward(x)
    np.testing.assert_allclose(ya, yb, rtol=1e-11, atol=1e-11)
    g = rng.normal(size=ya.shape)
    np.testing.assert_allclose(a.backward(g), b.backward(g), rtol=1e-11, atol=1e-11)
    for k in a.grads:
        np.testing.assert_allclose(a.grads[k], b.grads[k], rtol=1e-11, atol=1e-11, err_msg=k)


def test_winograd_conv_gradients(rng):
    """Central differences in float64 through the Winograd forward and backward."""
    conv = random_biases(Conv2d(16, 5, 3, 1, 1, rng=rng, dtype=F64), rng)
    assert conv._winograd()
    gradcheck(conv, rng.normal(size=(2, 16, 6, 7)), rng)


@pytest.mark.parametrize("c_in, k, stride, padding, want", [
    (16, 3, 1, 1, True), (64, 3, 1, 1, True), (3, 3, 1, 1, False),      # few channels: im2col
    (16, 3, 2, 1, False), (16, 3, 1, 0, False), (16, 1, 1, 0, False), (16, 5, 1, 2, False)])
def test_which_convs_use_winograd(c_in, k, stride, padding, want):
    assert Conv2d(c_in, 4, k, stride, padding)._winograd() is want


def test_unknown_algo_is_a_clear_error(rng):
    conv = Conv2d(16, 4, 3, 1, 1)
    conv.algo = "fft"
    with pytest.raises(ValueError, match="unknown conv algo 'fft'"):
        conv.forward(rng.normal(size=(1, 16, 4, 4)).astype(np.float32))


def test_backend_agrees_with_numpy(xp, rng):
    x = rng.normal(size=(3, 16, 10, 7))
    wt = rng.normal(size=(8, 16, 3, 3))
    want = winograd.conv3x3_nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                                 winograd.transform_weights(wt))
    got = winograd.conv3x3_nhwc(to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), xp),
                                winograd.transform_weights(to_device(wt, xp)))
    np.testing.assert_allclose(to_host(got), want, rtol=1e-10, atol=1e-11)


@settings(max_examples=40)
@given(case=cases(), seed=seeds)
def test_weight_gradient_equals_the_definition(case, seed):
    """dL/dw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] xpad[n,c,i+p,j+q], for any size and block split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["n"], case["h"], case["w"], case["c"]))
    gy = rng.normal(size=(case["n"], case["h"], case["w"], case["o"]))
    xpad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.stack([np.stack([np.einsum("nhwc,nhwo->oc", xpad[:, p:p + case["h"], q:q + case["w"]], gy)
                               for q in range(3)], -1) for p in range(3)], -2)      # (O, C, 3, 3)
    got = winograd.conv3x3_weight_grad_nhwc(x, gy, nb=case["nb"])
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_weight_transform_and_its_adjoint(rng):
    """<transform_weights(w), dU> = <w, weight_grad(dU)> (weight_grad is the exact adjoint)."""
    w, dU = rng.normal(size=(5, 4, 3, 3)), rng.normal(size=(36, 4, 5))
    lhs = np.sum(winograd.transform_weights(w) * dU)
    np.testing.assert_allclose(lhs, np.sum(w * winograd.weight_grad(dU)), rtol=1e-12)


def test_kept_weight_transform_follows_in_place_edits(rng):
    """In eval mode the transformed weights are kept between calls, but never go stale."""
    conv = Conv2d(16, 4, 3, 1, 1, rng=rng, dtype=F64).eval()
    x = rng.normal(size=(2, 16, 5, 5))
    y0 = conv.forward(x)
    conv.params["weight"][0, 0, 1, 1] += 1.0              # an in-place edit
    y1 = conv.forward(x)
    np.testing.assert_allclose(y1, conv_direct(x, conv.params["weight"], conv.params["bias"], 1, 1),
                               rtol=1e-11, atol=1e-11)
    assert not np.allclose(y0, y1)
