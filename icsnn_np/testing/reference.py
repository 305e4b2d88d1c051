"""Slow, obvious references: the definitions the fast kernels are tested against.

``conv2d_naive`` is the four-loop definition of a convolution that ``layers.Conv2d``
(im2col + one GEMM) and the fast engine's Winograd are checked against (tests, tutorial A1).
"""
from __future__ import annotations

import numpy as np

from ..layers import conv_out_size


def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """The definition of a convolution with explicit loops (slow; for tests and tutorials).

    y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * xpad[n, c, i*s + p, j*s + q]
    """
    x, weight = np.asarray(x), np.asarray(weight)
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho, Wo = conv_out_size(H, kh, stride, padding), conv_out_size(W, kw, stride, padding)
    y = np.zeros((N, O, Ho, Wo), dtype=np.float64)
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xpad[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[n, o, i, j] = np.sum(patch.astype(np.float64) * weight[o])
            if bias is not None:
                y[n, o] += bias[o]
    return y
