"""Hypothesis strategies for the tests, in one place (STYLE 8; minitorch ``tests/strategies.py``).

Shapes are kept small (batch 1-3, channels 1-4, spatial 1-8, kernel 1-3, stride 1-2,
padding 0-2) and floats bounded, so each example runs in milliseconds. Array *values* are
usually drawn from a ``seed`` rather than element by element: the tests are laws over any
values, and a seed keeps shrinking cheap while the shapes shrink properly.

Sections: scalars and arrays; ANN layer cases; Winograd cases; SNN cases (thresholds,
initial potentials, a layer with the spike trains that drive it).

    @given(case=conv_cases(), seed=seeds)
    def test_something(case, seed): ...
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from icsnn_np.layers import Conv2d, Linear

# --------------------------------------------------------------------------- scalars, arrays
seeds = st.integers(0, 2**32 - 1)

batches = st.integers(1, 3)
channels = st.integers(1, 4)
# Conv2d takes a different (channels-last) im2col path from 16 input channels on.
wide_channels = st.integers(16, 18)
spatial = st.integers(1, 8)
kernels = st.integers(1, 3)
strides = st.integers(1, 2)
paddings = st.integers(0, 2)


def bounded_floats(lo: float = -4.0, hi: float = 4.0, width: int = 64):
    """Finite floats in [lo, hi] (no NaN / inf)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=width)


def float_arrays(shape, lo: float = -4.0, hi: float = 4.0, dtype=np.float64):
    """Arrays of ``shape`` with bounded finite elements, drawn element by element."""
    width = 8 * np.dtype(dtype).itemsize
    return hnp.arrays(dtype, shape, elements=bounded_floats(lo, hi, width=width))


def away_from_zero(rng: np.random.Generator, shape, margin: float = 0.1, hi: float = 2.0):
    """Values with margin <= |x| <= hi and random sign: no ReLU kink within ``margin``."""
    mag = rng.uniform(margin, hi, size=shape)
    return np.where(rng.random(shape) < 0.5, -mag, mag)


# --------------------------------------------------------------------------- ANN layer cases
@dataclass(frozen=True)
class ConvCase:
    """One Conv2d configuration: input (n, c_in, h, w), kernel k, stride, padding."""

    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    k: int
    stride: int
    padding: int

    @property
    def in_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def out_shape(self):
        ho = (self.h + 2 * self.padding - self.k) // self.stride + 1
        wo = (self.w + 2 * self.padding - self.k) // self.stride + 1
        return (self.n, self.c_out, ho, wo)


@st.composite
def conv_cases(draw, c_in=channels, c_out=channels, size=spatial, n=batches):
    """Conv2d cases whose output is at least 1x1 (h + 2*padding >= k)."""
    k, s, p = draw(kernels), draw(strides), draw(paddings)
    lo = max(1, k - 2 * p)
    hs = size.filter(lambda v: v >= lo) if lo > 1 else size
    return ConvCase(draw(n), draw(c_in), draw(c_out), draw(hs), draw(hs), k, s, p)


def wide_conv_cases():
    """Conv2d cases on the channels-last path (>= 16 input channels), kept tiny elsewhere."""
    return conv_cases(c_in=wide_channels, c_out=st.integers(1, 3), size=st.integers(1, 5),
                      n=st.integers(1, 2))


def any_conv_cases():
    """Either kind: few input channels or the fast conv's channels-last path."""
    return st.one_of(conv_cases(), wide_conv_cases())


@dataclass(frozen=True)
class PoolCase:
    """One AvgPool2d configuration: input (n, c, h, w), kernel k, stride."""

    n: int
    c: int
    h: int
    w: int
    k: int
    stride: int
    channels_last: bool = False   # feed the input stored as (N, H, W, C), as a conv leaves it

    @property
    def in_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def out_shape(self):
        return (self.n, self.c, (self.h - self.k) // self.stride + 1,
                (self.w - self.k) // self.stride + 1)


@st.composite
def pool_cases(draw, overlap: bool | None = None):
    """AvgPool2d cases with h, w >= k. ``overlap``: False -> stride == k (the VGG pool),
    True -> stride < k (overlapping windows), None -> any stride 1..3."""
    k = draw(st.integers(1, 3) if overlap is not True else st.integers(2, 3))
    if overlap is False:
        s = k
    elif overlap is True:
        s = draw(st.integers(1, k - 1))
    else:
        s = draw(st.integers(1, 3))
    size = st.integers(k, 8)
    return PoolCase(draw(batches), draw(channels), draw(size), draw(size), k, s,
                    draw(st.booleans()))


@dataclass(frozen=True)
class LinearCase:
    n: int
    d_in: int
    d_out: int


linear_cases = st.builds(LinearCase, batches, st.integers(1, 6), st.integers(1, 6))


@dataclass(frozen=True)
class BlockCase:
    """One BasicBlock: input (n, c_in, h, w) -> (n, c_out, ceil(h/stride), ceil(w/stride))."""

    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    stride: int

    @property
    def in_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def projection(self) -> bool:
        return self.stride != 1 or self.c_in != self.c_out


@st.composite
def block_cases(draw, projection: bool):
    """BasicBlock cases with an identity shortcut (projection=False: stride 1, c_in == c_out)
    or a 1x1 projection shortcut (projection=True: the stride or the width changes)."""
    n, h, w = draw(batches), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c_in = draw(channels)
    if not projection:
        return BlockCase(n, c_in, c_in, h, w, 1)
    stride = draw(strides)
    c_out = draw(channels if stride == 2 else channels.filter(lambda c: c != c_in))
    return BlockCase(n, c_in, c_out, h, w, stride)


# --------------------------------------------------------------------------- Winograd cases
@st.composite
def winograd_cases(draw):
    """A 3x3 'same' conv: n images (n, c, h, w) -> o channels, computed nb images per block
    (any image size, so tiles overhang the border; any block size, so the last is short)."""
    return dict(n=draw(st.integers(1, 5)), c=draw(st.integers(1, 6)), o=draw(st.integers(1, 5)),
                h=draw(st.integers(1, 13)), w=draw(st.integers(1, 13)), nb=draw(st.integers(1, 4)))


# --------------------------------------------------------------------------- SNN cases
thresholds = bounded_floats(0.05, 4.0)               # V_th > 0
any_v0 = bounded_floats(-1e3, 1e3)                   # v(0): any sign, large included
small_v0 = bounded_floats(-3.0, 3.0)


@st.composite
def per_neuron(draw, shape, values, channel_shape=None):
    """A scalar, a per-channel array (``channel_shape``) or a per-neuron array (``shape``)."""
    kind = draw(st.sampled_from(["scalar", "channel", "neuron"] if channel_shape else
                                ["scalar", "neuron"]))
    if kind == "scalar":
        return draw(values)
    return draw(hnp.arrays(np.float64, channel_shape if kind == "channel" else shape, elements=values))


@st.composite
def linear_layer_cases(draw):
    """A float64 Linear layer with drawn weights, the spike trains (T, n, f_in) of the layer
    before, its threshold V_th_prev, and the node's V_th, v(0) (per layer or per neuron)."""
    T = draw(st.integers(1, 40))
    n, f_in, f_out = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    lin = Linear(f_in, f_out, dtype=np.float64)
    lin.params["weight"] = draw(float_arrays((f_out, f_in), -2.0, 2.0))
    lin.params["bias"] = draw(float_arrays((f_out,), -1.0, 1.0))
    spikes = draw(hnp.arrays(bool, (T, n, f_in)))
    return dict(T=T, n=n, layer=lin, spikes=spikes, v_th_prev=draw(thresholds),
                v_th=draw(per_neuron((f_out,), thresholds)), v0=draw(per_neuron((f_out,), any_v0)))


@st.composite
def conv_layer_cases(draw):
    """As ``linear_layer_cases`` for a float64 Conv2d (1x1 or 3x3, stride 1-2, padding 0-1);
    V_th and v(0) per layer, per channel (C, 1, 1) or per neuron."""
    T = draw(st.integers(1, 40))
    n = draw(st.integers(1, 2))
    c_in = draw(st.sampled_from([1, 2, 17]))
    c_out = draw(st.integers(1, 3))
    k, stride, pad = draw(st.sampled_from([1, 3])), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    H = draw(st.integers(k, 4))
    conv = Conv2d(c_in, c_out, k, stride, pad, dtype=np.float64)
    conv.params["weight"] = draw(float_arrays((c_out, c_in, k, k), -1.0, 1.0))
    conv.params["bias"] = draw(float_arrays((c_out,), -1.0, 1.0))
    Ho = (H + 2 * pad - k) // stride + 1
    shape = (c_out, Ho, Ho)
    spikes = draw(hnp.arrays(bool, (T, n, c_in, H, H)))
    return dict(T=T, n=n, layer=conv, spikes=spikes, v_th_prev=draw(thresholds),
                v_th=draw(per_neuron(shape, thresholds, (c_out, 1, 1))),
                v0=draw(per_neuron(shape, any_v0, (c_out, 1, 1))))
