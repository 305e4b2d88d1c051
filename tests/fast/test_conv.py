"""FastConv2d (fast/conv.py): the teaching Conv2d's function by blocks of images,
channels-last, or Winograd. It equals the definition and the teaching layer, forward and
backward (float64 gradient checks), for every path: few input channels (channel-major
im2col), >= 16 channels (channels-last im2col, flipped-kernel dx), Winograd (3x3 'same'),
any block split and thread split, into a reused output buffer."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import (F64, channels_last, check_backward_without_input_grad, conv_direct,
                     gradcheck, random_biases)
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import any_conv_cases, conv_cases, seeds, wide_conv_cases

from icsnn_np.backend import to_device, to_host
from icsnn_np.fast import conv as fast_conv
from icsnn_np.fast import threads
from icsnn_np.fast.conv import FEW_CHANNELS, FastConv2d
from icsnn_np.fast.layers import twin
from icsnn_np.fast.nhwc import is_channels_last
from icsnn_np.layers import Conv2d
from icsnn_np.testing.reference import conv2d_naive


def fast_conv_case(case, rng, dtype=F64, algo="auto"):
    conv = random_biases(FastConv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                                    rng=rng, dtype=dtype), rng)
    conv.algo = algo
    return conv


@pytest.fixture
def two_workers(monkeypatch):
    """Every parallel section split over two workers, however small."""
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS", 0)


# --------------------------------------------------------------------------- forward
@given(case=any_conv_cases(), seed=seeds)
def test_fast_conv_equals_naive_reference_in_either_memory_order(case, seed):
    rng = np.random.default_rng(seed)
    conv = fast_conv_case(case, rng)
    x = rng.normal(size=case.in_shape)
    want = conv2d_naive(x, conv.params["weight"], conv.params["bias"], case.stride, case.padding)
    for inp in (x, channels_last(x)):
        y = conv.forward(inp)
        assert y.shape == case.out_shape and is_channels_last(y)       # stored (N, H, W, C)
        np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("c_in, c_out, k, stride, padding",
                         [(3, 16, 3, 1, 1), (3, 8, 3, 2, 1), (20, 12, 3, 1, 1),
                          (20, 12, 3, 2, 1), (32, 16, 1, 2, 0), (17, 5, 2, 1, 2),
                          (16, 8, 3, 1, 1), (64, 32, 3, 1, 1)])
def test_float32_fast_conv_matches_the_definition(rng, c_in, c_out, k, stride, padding):
    """float32 rounding is bounded by a few ulps of the sum of |terms| (what bounds any
    float32 conv), Winograd's transforms (weights up to 8) included."""
    conv = random_biases(FastConv2d(c_in, c_out, k, stride, padding, rng=rng), rng)
    x = rng.normal(size=(3, c_in, 9, 9)).astype(np.float32)
    y = conv.forward(x)
    assert y.dtype == np.float32
    w, b = conv.params["weight"], conv.params["bias"]
    err = np.abs(y - conv_direct(x, w, b, stride, padding))
    scale = conv_direct(np.abs(x), np.abs(w), np.abs(b), stride, padding)
    assert np.all(err <= 1e-5 * scale + 1e-6), float((err / scale).max())


# --------------------------------------------------------------------------- against the teaching layer
@settings(max_examples=40)
@given(case=any_conv_cases(), seed=seeds, algo=st.sampled_from(["auto", "im2col"]))
def test_twin_equals_the_teaching_conv_forward_and_backward(case, seed, algo):
    """The twin shares the teaching layer's parameters and gives its output, dL/dx and
    dL/dW, dL/db (float64, to rounding)."""
    rng = np.random.default_rng(seed)
    conv = random_biases(Conv2d(case.c_in, case.c_out, case.k, case.stride, case.padding,
                                rng=rng, dtype=F64), rng).train()
    fast = twin(conv)
    fast.algo = algo
    assert isinstance(fast, FastConv2d) and fast.params is conv.params and fast.grads is conv.grads
    x = rng.normal(size=case.in_shape)
    g = rng.normal(size=case.out_shape)
    conv.zero_grad()
    y, dx = conv.forward(x), conv.backward(g)
    grads = {k: v.copy() for k, v in conv.grads.items()}
    conv.zero_grad()
    yf = fast.forward(x)
    dxf = fast.backward(g)
    np.testing.assert_allclose(yf, y, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dxf, dx, rtol=1e-11, atol=1e-11)
    for k in grads:
        np.testing.assert_allclose(conv.grads[k], grads[k], rtol=1e-11, atol=1e-11, err_msg=k)


# --------------------------------------------------------------------------- gradient checks
@given(case=conv_cases(), seed=seeds)
def test_few_channel_fast_conv_gradients(case, seed):
    rng = np.random.default_rng(seed)
    gradcheck(fast_conv_case(case, rng), rng.normal(size=case.in_shape), rng)


@given(case=wide_conv_cases(), seed=seeds)
def test_channels_last_fast_conv_gradients(case, seed):
    """>= 16 input channels: the flipped-kernel dx (stride 1) and the col2im dx (stride 2),
    Winograd where the conv is 3x3 'same'."""
    rng = np.random.default_rng(seed)
    gradcheck(fast_conv_case(case, rng), rng.normal(size=case.in_shape), rng)


@pytest.mark.parametrize("c_in, stride, padding", [(3, 2, 1), (3, 2, 2), (16, 2, 1), (16, 1, 1),
                                                   (16, 1, 0), (16, 2, 0)])
@pytest.mark.parametrize("algo", ["auto", "im2col"])
def test_fast_conv_gradients_stride_and_padding(rng, c_in, stride, padding, algo):
    conv = random_biases(FastConv2d(c_in, 4, 3, stride, padding, rng=rng, dtype=F64), rng)
    conv.algo = algo
    gradcheck(conv, rng.normal(size=(2, c_in, 6, 7)), rng)


def test_fast_conv_without_bias(rng):
    conv = FastConv2d(16, 3, 3, 1, 1, bias=False, rng=rng, dtype=F64)
    assert conv.uses_winograd() and [n for n, _, _ in conv.named_parameters()] == ["weight"]
    gradcheck(conv, rng.normal(size=(2, 16, 4, 5)), rng)


@pytest.mark.parametrize("c_in, k, stride", [(3, 3, 1), (16, 3, 1), (16, 3, 2), (3, 1, 1), (16, 1, 1)],
                         ids=["few-channels", "winograd", "strided", "1x1-few", "1x1-wide"])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(rng, c_in, k, stride):
    check_backward_without_input_grad(FastConv2d, c_in, k, stride, rng)


# --------------------------------------------------------------------------- Winograd
@pytest.mark.parametrize("c_in, k, stride, padding, want", [
    (16, 3, 1, 1, True), (64, 3, 1, 1, True), (3, 3, 1, 1, False),      # few channels: im2col
    (16, 3, 2, 1, False), (16, 3, 1, 0, False), (16, 1, 1, 0, False), (16, 5, 1, 2, False)])
def test_which_convs_use_winograd(c_in, k, stride, padding, want):
    conv = FastConv2d(c_in, 4, k, stride, padding)
    assert conv.uses_winograd() is want
    conv.algo = "im2col"
    assert conv.uses_winograd() is False
    assert FEW_CHANNELS == 16


def test_unknown_algo_is_a_clear_error(rng):
    conv = FastConv2d(16, 4, 3, 1, 1)
    conv.algo = "fft"
    with pytest.raises(ValueError, match="unknown conv algo 'fft'; choose one of auto, im2col"):
        conv.forward(rng.normal(size=(1, 16, 4, 4)).astype(np.float32))


@settings(max_examples=25)
@given(n=st.integers(1, 3), c=st.integers(16, 20), o=st.integers(1, 6), h=st.integers(1, 9),
       w=st.integers(1, 9), seed=seeds)
def test_winograd_and_im2col_agree_forward_and_backward(n, c, o, h, w, seed):
    """The Winograd path (auto) and the im2col path give the same output, input gradient
    and weight/bias gradients (float64)."""
    rng = np.random.default_rng(seed)
    a = random_biases(FastConv2d(c, o, 3, 1, 1, rng=rng, dtype=F64), rng)
    b = FastConv2d(c, o, 3, 1, 1, dtype=F64)
    b.load_state_dict(a.state_dict())
    b.algo = "im2col"
    assert a.uses_winograd() and not b.uses_winograd()
    x = rng.normal(size=(n, c, h, w))
    ya, yb = a.train().forward(x), b.train().forward(x)
    np.testing.assert_allclose(ya, yb, rtol=1e-11, atol=1e-11)
    g = rng.normal(size=ya.shape)
    np.testing.assert_allclose(a.backward(g), b.backward(g), rtol=1e-11, atol=1e-11)
    for k in a.grads:
        np.testing.assert_allclose(a.grads[k], b.grads[k], rtol=1e-11, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("training", [False, True], ids=["eval-kept", "train-recomputed"])
def test_winograd_weights_follow_in_place_edits(rng, training):
    """In eval mode the transformed weights are kept between calls, but never go stale; in
    training mode they are recomputed at every call (an SGD step edits W in place)."""
    conv = FastConv2d(16, 4, 3, 1, 1, rng=rng, dtype=F64).train(training)
    assert conv.uses_winograd()
    x = rng.normal(size=(2, 16, 5, 5))
    y0 = np.array(conv.forward(x))
    conv.params["weight"][0, 0, 1, 1] += 1.0              # an in-place edit
    y1 = conv.forward(x)
    np.testing.assert_allclose(y1, conv_direct(x, conv.params["weight"], conv.params["bias"], 1, 1),
                               rtol=1e-11, atol=1e-11)
    assert not np.allclose(y0, y1)


# --------------------------------------------------------------------------- blocks, threads, buffers
@pytest.mark.parametrize("c_in, k, stride, padding, algo", [
    (3, 3, 1, 1, "auto"), (16, 3, 1, 1, "im2col"), (16, 3, 2, 1, "auto"), (16, 3, 1, 1, "auto"),
    (18, 1, 1, 0, "auto")], ids=["few", "flip", "col2im", "winograd", "1x1"])
def test_block_and_thread_splits_do_not_change_results(rng, monkeypatch, two_workers,
                                                       c_in, k, stride, padding, algo):
    """One image per block (and per Winograd block), blocks split over two workers: the
    output and dL/dx equal the one-block results to rounding, the parameter gradients
    (summed per worker, then in slice order) too."""
    base = random_biases(Conv2d(c_in, 5, k, stride, padding, rng=rng, dtype=F64), rng).train()
    x = rng.normal(size=(5, c_in, 7, 6))
    g = rng.normal(size=(5, 5) + base.out_size(7, 6))

    def run():
        conv = twin(base)
        conv.algo = algo
        conv.zero_grad()
        y, dx = np.array(conv.forward(x)), np.array(conv.backward(g))
        return y, dx, {k_: v.copy() for k_, v in conv.grads.items()}

    monkeypatch.setattr(threads, "num_workers", lambda: 1)
    y1, dx1, g1 = run()
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(fast_conv, "IM2COL_BLOCK_BYTES", 1)
    monkeypatch.setattr(fast_conv.winograd, "BLOCK_BYTES", 1)
    y2, dx2, g2 = run()
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-12, atol=1e-12)
    for key in g1:
        np.testing.assert_allclose(g2[key], g1[key], rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("c_in", [3, 16], ids=["im2col", "winograd"])
def test_forward_writes_into_a_reusable_output(rng, c_in):
    """``out=`` an earlier output of the layer: its buffer is overwritten (no allocation),
    also when it has more rows than needed; a buffer that does not fit is left alone."""
    conv = random_biases(FastConv2d(c_in, 4, 3, 1, 1, rng=rng, dtype=F64), rng).eval()
    x_big, x = rng.normal(size=(4, c_in, 5, 5)), rng.normal(size=(3, c_in, 5, 5))
    want = conv_direct(x, conv.params["weight"], conv.params["bias"], 1, 1)
    first = conv.forward(x_big)
    y = conv.forward(x, out=first)
    assert np.shares_memory(y, first) and y.shape == (3, 4, 5, 5)
    np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)
    for bad in (np.zeros((3, 4, 5, 5), np.float32),             # wrong dtype
                np.zeros((3, 4, 5, 5)),                         # not channels-last
                np.zeros((2, 5, 5, 4)).transpose(0, 3, 1, 2)):  # too few rows
        keep = bad.copy()
        y = conv.forward(x, out=bad)
        assert not np.shares_memory(y, bad)
        np.testing.assert_array_equal(bad, keep)
        np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("c_in", [3, 16], ids=["im2col", "winograd"])
def test_fast_conv_on_backend_agrees_with_numpy(xp, rng, c_in):
    ref = random_biases(FastConv2d(c_in, 8, 3, 1, 1, rng=rng, dtype=F64), rng).train()
    x, g = rng.normal(size=(3, c_in, 6, 5)), rng.normal(size=(3, 8, 6, 5))
    want_y, want_dx = np.array(ref.forward(x)), np.array(ref.backward(g))
    want = {k: v.copy() for k, v in ref.grads.items()}
    conv = FastConv2d(c_in, 8, 3, 1, 1, dtype=F64)
    conv.load_state_dict(ref.state_dict())
    conv.to(xp).train()
    y = conv.forward(to_device(x, xp))
    dx = conv.backward(to_device(g, xp))
    np.testing.assert_allclose(to_host(y), want_y, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(to_host(dx), want_dx, rtol=1e-10, atol=1e-11)
    for k in want:
        np.testing.assert_allclose(to_host(conv.grads[k]), want[k], rtol=1e-9, atol=1e-10, err_msg=k)


def test_fast_conv_keeps_the_clear_shape_errors():
    with pytest.raises(ValueError, match=r"Conv2d expects \(N, 16, H, W\), got \(2, 3, 8, 8\)"):
        FastConv2d(16, 8, 3).forward(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        FastConv2d(20, 3, 3).forward(np.zeros((1, 20, 2, 2), np.float32))
