"""Channels-last memory: an (N, C, H, W) array stored as an (N, H, W, C) buffer.

The fast convolutions write their output channels-last, so the GEMM writes whole rows of
output pixels, the next convolution reads its im2col rows from contiguous channel runs, and
no large activation is ever transposed by copy. ReLU, pooling and the IF nodes keep that
memory order (they allocate with ``empty_like``). The arrays keep the (N, C, H, W) *shape*
everywhere, so the rest of the package never sees the difference.
"""
from __future__ import annotations

from ..backend import xp_of


def is_channels_last(x) -> bool:
    """True when the (N, C, H, W) array ``x`` is stored as an (N, H, W, C) buffer."""
    return x.transpose(0, 2, 3, 1).flags.c_contiguous


def empty_channels_last(xp, shape, dtype):
    """An uninitialised (N, C, H, W) array stored channels-last."""
    N, C, H, W = shape
    return xp.empty((N, H, W, C), dtype=dtype).transpose(0, 3, 1, 2)


def to_channels_last(x):
    """A channels-last copy of the (N, C, H, W) array ``x``."""
    out = empty_channels_last(xp_of(x), x.shape, x.dtype)
    out[...] = x
    return out


def reusable(out, shape, dtype):
    """The first shape[0] rows of ``out`` when they can hold an (N, C, H, W) result of
    ``dtype`` stored channels-last, else None (the layer then allocates)."""
    if (out is None or out.dtype != dtype or out.ndim != 4 or tuple(out.shape[1:]) != tuple(shape[1:])
            or out.shape[0] < shape[0] or not is_channels_last(out)):
        return None
    return out[:shape[0]]


def tap_span(n_out, off, padding, stride, n_in):
    """Output positions [lo, hi) whose kernel offset ``off`` lands inside the input, and
    the input position of ``lo``: o*stride + off - padding must lie in [0, n_in)."""
    lo = max(0, -((off - padding) // stride))
    hi = max(lo, min(n_out, (n_in - 1 - off + padding) // stride + 1))
    return lo, hi, lo * stride + off - padding


def im2col_nhwc(x_nhwc, cols, stride, padding):
    """Channels-last im2col, in place: (n, H, W, C) -> cols (n, Ho, Wo, kh, kw, C).

    Only taps inside the image are written: the rest of ``cols`` must already hold zeros
    (the padding), which stay there when the buffer is reused for the next block.
    """
    _, H, W, _ = x_nhwc.shape
    _, Ho, Wo, kh, kw, _ = cols.shape
    for i in range(kh):
        hl, hh, r0 = tap_span(Ho, i, padding, stride, H)
        for j in range(kw):
            wl, wh, c0 = tap_span(Wo, j, padding, stride, W)
            cols[:, hl:hh, wl:wh, i, j] = x_nhwc[:, r0:r0 + stride * (hh - hl):stride,
                                                 c0:c0 + stride * (wh - wl):stride]
    return cols


def col2im_nhwc(dcols, dx_nhwc, stride, padding):
    """Adjoint of ``im2col_nhwc``: scatter-add dcols (n, Ho, Wo, kh, kw, C) into (n, H, W, C)."""
    _, H, W, _ = dx_nhwc.shape
    _, Ho, Wo, kh, kw, _ = dcols.shape
    for i in range(kh):
        hl, hh, r0 = tap_span(Ho, i, padding, stride, H)
        for j in range(kw):
            wl, wh, c0 = tap_span(Wo, j, padding, stride, W)
            dx_nhwc[:, r0:r0 + stride * (hh - hl):stride,
                    c0:c0 + stride * (wh - wl):stride] += dcols[:, hl:hh, wl:wh, i, j]
    return dx_nhwc
