"""Winograd F(4x4, 3x3): equals the definition of a convolution (float64: to rounding;
float32: to a few ulps of the sum of |terms|), for every size and block split, forward and
backward; the transform matrices satisfy the identity that makes the algorithm exact.

The module's functions on channels-last arrays; FastConv2d's use of them (which convs take
Winograd, forward and backward against im2col) is tested in test_conv.py."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from helpers import conv_direct
from strategies import seeds, winograd_cases

from icsnn_np.backend import to_device, to_host
from icsnn_np.fast import threads, winograd


def test_matrices_compute_a_1d_correlation_exactly():
    """F(4, 3) in 1-D: A^T [(G g) * (B^T d)] = the 4 outputs of a 3-tap correlation of 6 inputs,
    for every unit d and g (so, by linearity, for all); the 2-D algorithm is its square."""
    for i in range(6):
        for k in range(3):
            d, g = np.eye(6)[i], np.eye(3)[k]
            want = np.array([d[j:j + 3] @ g for j in range(4)])
            got = winograd.A_T @ ((winograd.G @ g) * (winograd.B_T @ d))
            np.testing.assert_allclose(got, want, atol=1e-14)


@settings(max_examples=60)
@given(case=winograd_cases(), seed=seeds)
def test_conv3x3_equals_the_definition(case, seed):
    """Any image size (tiles that overhang the border), any block size (short last block)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["n"], case["c"], case["h"], case["w"]))
    wt = rng.normal(size=(case["o"], case["c"], 3, 3))
    U = winograd.transform_weights(wt)
    assert U.shape == (36, case["c"], case["o"])
    y = winograd.conv3x3(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), U, nb=case["nb"])
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), conv_direct(x, wt, None, 1, 1),
                               rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("h, w", [(8, 8), (4, 12), (8, 6), (7, 8), (5, 5)])
def test_whole_tiles_and_overhanging_tiles_both_give_the_definition(rng, h, w):
    """Sizes that are multiples of 4 take the reshape path for the outputs and output
    gradients, others the per-offset loop; both, forward and weight gradient, and the input
    tiles taken from a strided (channels-last view) input."""
    x = rng.normal(size=(3, 5, h, w))
    wt, gy = rng.normal(size=(4, 5, 3, 3)), rng.normal(size=(3, h, w, 4))
    xh = x.transpose(0, 2, 3, 1)                                         # a view, not a copy
    y = winograd.conv3x3(xh, winograd.transform_weights(wt), nb=2)
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), conv_direct(x, wt, None, 1, 1),
                               rtol=1e-11, atol=1e-11)
    xpad = np.pad(xh, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.stack([np.stack([np.einsum("nhwc,nhwo->oc", xpad[:, p:p + h, q:q + w], gy)
                               for q in range(3)], -1) for p in range(3)], -2)
    np.testing.assert_allclose(winograd.conv3x3_weight_grad(xh, gy, nb=2), want,
                               rtol=1e-11, atol=1e-11)


def test_conv3x3_adds_the_bias_and_writes_into_out(rng):
    x = rng.normal(size=(2, 6, 5, 4))                                    # (N, H, W, C)
    wt, b = rng.normal(size=(3, 4, 3, 3)), rng.normal(size=3)
    out = np.full((2, 6, 5, 3), np.nan)
    y = winograd.conv3x3(x, winograd.transform_weights(wt), bias=b, out=out)
    assert y is out
    want = conv_direct(x.transpose(0, 3, 1, 2), wt, b, 1, 1).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("k, stride, padding, want", [(3, 1, 1, True), (3, 2, 1, False),
                                                      (3, 1, 0, False), (1, 1, 0, False),
                                                      (5, 1, 2, False), (3, 1, 2, False)])
def test_eligible_is_3x3_stride_1_same(k, stride, padding, want):
    assert winograd.eligible(k, stride, padding) is want


def test_thread_split_gives_the_same_results(rng, monkeypatch):
    """Blocks spread over two workers: the same output; the weight gradient, summed per
    worker then in slice order, the same to rounding."""
    x = rng.normal(size=(6, 7, 9, 5))
    g = rng.normal(size=(6, 7, 9, 4))
    U = winograd.transform_weights(rng.normal(size=(4, 5, 3, 3)))
    y1, dw1 = winograd.conv3x3(x, U, nb=1), winograd.conv3x3_weight_grad(x, g, nb=1)
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS", 0)
    seen = []
    real = threads.parallel_for
    monkeypatch.setattr(winograd, "parallel_for",
                        lambda fn, n, el, blas=False: seen.append(n) or real(fn, n, el, blas))
    y2, dw2 = winograd.conv3x3(x, U, nb=1), winograd.conv3x3_weight_grad(x, g, nb=1)
    assert seen == [6, 6]                                   # six blocks of one image, split
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_allclose(dw2, dw1, rtol=1e-12, atol=1e-12)


def test_backend_agrees_with_numpy(xp, rng):
    x = rng.normal(size=(3, 16, 10, 7))
    wt = rng.normal(size=(8, 16, 3, 3))
    want = winograd.conv3x3(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                            winograd.transform_weights(wt))
    got = winograd.conv3x3(to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), xp),
                           winograd.transform_weights(to_device(wt, xp)))
    np.testing.assert_allclose(to_host(got), want, rtol=1e-10, atol=1e-11)


@settings(max_examples=40)
@given(case=winograd_cases(), seed=seeds)
def test_weight_gradient_equals_the_definition(case, seed):
    """dL/dw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] xpad[n,c,i+p,j+q], for any size and block split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["n"], case["h"], case["w"], case["c"]))
    gy = rng.normal(size=(case["n"], case["h"], case["w"], case["o"]))
    xpad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.stack([np.stack([np.einsum("nhwc,nhwo->oc", xpad[:, p:p + case["h"], q:q + case["w"]], gy)
                               for q in range(3)], -1) for p in range(3)], -2)      # (O, C, 3, 3)
    got = winograd.conv3x3_weight_grad(x, gy, nb=case["nb"])
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_weight_transform_and_its_adjoint(rng):
    """<transform_weights(w), dU> = <w, weight_grad(dU)> (weight_grad is the exact adjoint)."""
    w, dU = rng.normal(size=(5, 4, 3, 3)), rng.normal(size=(36, 4, 5))
    lhs = np.sum(winograd.transform_weights(w) * dU)
    np.testing.assert_allclose(lhs, np.sum(w * winograd.weight_grad(dU)), rtol=1e-12)


def test_weight_gradient_and_cached_transform_on_backend_agree_with_numpy(xp, rng):
    """dL/dW by the Winograd adjoint on the device; FastConv2d's transformed weights in eval
    mode follow an in-place edit of W on every backend (no stale cache)."""
    from icsnn_np.fast.conv import FastConv2d
    x, g = rng.normal(size=(3, 9, 6, 16)), rng.normal(size=(3, 9, 6, 8))
    np.testing.assert_allclose(to_host(winograd.conv3x3_weight_grad(to_device(x, xp), to_device(g, xp))),
                               winograd.conv3x3_weight_grad(x, g), rtol=1e-10, atol=1e-11)
    conv = FastConv2d(16, 8, 3, 1, 1, dtype=np.float64, rng=rng).to(xp).eval()
    xd = to_device(x.transpose(0, 3, 1, 2), xp)
    first = to_host(conv.forward(xd))
    conv.params["weight"] *= 2.0                          # edited in place: same array object
    np.testing.assert_allclose(to_host(conv.forward(xd)), 2 * first - 1 * to_host(
        conv.params["bias"]).reshape(1, -1, 1, 1), rtol=1e-10, atol=1e-10)


def test_block_size_follows_the_l2_cache_of_the_machine(monkeypatch):
    """Blocks of about the L2's size of tiles (a power of two of images), 1 MB where L2 is
    unknown; the im2col conv's blocks 4 x L2 (4 MB); an explicit BLOCK_BYTES overrides it."""
    from icsnn_np.fast import cache
    from icsnn_np.fast import conv as fast_conv
    from icsnn_np.layers import Conv2d
    tile = 36 * 8 * 8 * 32 * 4                       # one 32x32x32 image's tiles, float32
    conv = fast_conv.FastConv2d.of(Conv2d(32, 8, 3, 1, 1))
    x = np.zeros((64, 32, 32, 32), np.float32)
    seen = {}
    for l2 in (1 << 20, 1 << 18, None):
        monkeypatch.setattr(cache, "cache_sizes", lambda l2=l2: {"L1d": None, "L2": l2, "L3": None})
        seen[l2] = (winograd.block_images(32, 32, 32, 4, 64, False), conv._block_images(x, 32, 32))
    assert seen[1 << 20][0] == 1 << ((1 << 20) // tile).bit_length() - 1 == 2
    assert seen[1 << 18][0] == 1                     # 256 KB of tiles: one image per block
    assert seen[None] == seen[1 << 20]               # unknown: the 1 MB / 4 MB defaults
    assert seen[1 << 20][1] == 2 and seen[1 << 18][1] == 1      # 4 MB / 1 MB of 1.2 MB images
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 8 * tile)
    assert winograd.block_images(32, 32, 32, 4, 64, False) == 8


def test_a_short_last_block_reuses_its_buffers(rng):
    """A block of fewer images than the workspace's (the last of a batch) gets cached buffers
    too: no fresh, zeroed workspace at every call (the SNN engine calls each layer per chunk)."""
    x = rng.normal(size=(3, 8, 8, 16)).astype(np.float32)
    ws = winograd.workspace(np, 4, 8, 8, 16, 8, np.float32)
    short = winograd._fit(ws, 3, x, 8)
    assert short is not ws and short.D.shape[2] == 3
    assert winograd._fit(ws, 3, x, 8) is short
