"""The integrate-and-fire (IF) neuron with soft reset (paper Eq. 2-6), and Eq. 11.

For every neuron of a layer l, at every time step t = 1 .. T:

    v_temp(t) = v(t-1) + I(t)                 Eq. 2, and Eq. 4 with I(t) = W x(t) + b
    theta(t)  = 1 if v_temp(t) > V_th else 0  Eq. 6
    v(t)      = v_temp(t) - theta(t) V_th     Eq. 3 and 5: "soft reset", by subtraction
    output    = theta(t) V_th                 threshold balancing: a spike carries V_th

Summing Eq. 5 over the T steps gives Eq. 11 (``eq11_rate``), the method's identity."""
from __future__ import annotations

import numpy as np

from .backend import xp_of
from .checks import check_finite, check_threshold
from .module import Module


class IFNode(Module):
    """A layer of IF neurons; each ``forward`` call is one time step for the whole layer.
    ``v_th`` and ``v0`` (v(0), the paper's ``init_mem``) are a scalar, (C, 1, 1), (C, H, W) or
    (N, C, H, W). State until ``reset``: ``v`` (v(T) after T steps, which Alg. 2 reads), and
    ``spike_count``, ``first_spike`` (the step of the first spike, 0 = none) when asked."""

    def __init__(self, v_th=1.0, v0=0.0, name: str = ""):
        super().__init__()
        self.v_th, self.v0, self.name = v_th, v0, name
        self.source = None       # the Conv2d/Linear whose output drives this node (Alg. 1)
        self.training = False
        self.reset(0)

    def reset(self, n: int, count: bool = False, record: bool = False):
        """The next call is step t = 1 for ``n`` samples, from v(0) (``count``: spike counts,
        ``record``: also first-spike times)."""
        self.n, self.t, self.v = n, 0, None
        self.count, self.record = count or record, record
        self.spike_count = self.first_spike = None

    def start(self, shape, xp, dtype):
        """Allocate v = v(0) for ``shape`` (N, ...); V_th, v(0) checked once (a NaN never fires)."""
        name = self.name or "IF node"
        if shape[0] != self.n:
            raise ValueError(f"{name}: expected a current for {self.n} samples, got {tuple(shape)}")
        if not np.issubdtype(dtype, np.floating):      # V_th 0.5 as an integer would be 0
            raise ValueError(f"{name}: the input current is {np.dtype(dtype)}: IF neurons need a "
                             f"float current (convert it, e.g. .astype(np.float32))")
        check_finite(self.v0, f"{name}: v(0)")
        v_th, v0 = xp.asarray(check_threshold(self.v_th, name), dtype), xp.asarray(self.v0, dtype)
        if not all(broadcasts(a.shape, tuple(shape)) for a in (v_th, v0)):
            raise ValueError(f"{name}: V_th {tuple(v_th.shape)} / v(0) {tuple(v0.shape)} do not fit the "
                             f"state {tuple(shape)}: a scalar, (C, 1, 1), (C, H, W) or (N, C, H, W)")
        self.v_th_dev = v_th
        self.v = xp.empty(shape, dtype=dtype)
        self.v[...] = v0
        self.spike_count = xp.zeros(shape, dtype=xp.int32) if self.count else None
        self.first_spike = xp.zeros(shape, dtype=xp.int32) if self.record else None

    def forward(self, current):
        """One time step: integrate ``current`` (N, ...), fire, reset; returns spikes * V_th."""
        if self.v is None:
            self.start(current.shape, xp_of(current), current.dtype)
        self.t += 1
        self.v += current                          # Eq. 4: v_temp(t) = v(t-1) + I(t)
        fired = self.v > self.v_th_dev             # Eq. 6: theta(t) = 1 if v_temp(t) > V_th
        spikes = fired * self.v_th_dev             # a spike carries V_th into layer l+1
        self.v -= spikes                           # Eq. 5: v(t) = v_temp(t) - theta(t) V_th
        if self.count:
            self.spike_count += fired
        if self.record:                            # copyto, not a mask assignment: no GPU sync
            xp_of(fired).copyto(self.first_spike, self.t, where=fired & (self.first_spike == 0))
        return spikes

    def backward(self, grad):  # pragma: no cover - a converted network is not trained
        raise RuntimeError("IF nodes have no gradient: train the ANN, then convert it")


def broadcasts(small, shape) -> bool:
    """Whether ``small`` holds one value or aligns with ``shape`` (N, ...) from the first or
    second axis, and broadcasts to it: a flat (C,) on (N, C, H, W) would vary along the width."""
    try:
        return (len(small) in (0, len(shape) - 1, len(shape)) or np.prod(small) == 1) and \
            np.broadcast_shapes(small, shape) == shape
    except ValueError:
        return False


def error_term(v0, v_T, v_th, T: int):
    """Eq. 11's error term (v(0) - v(T)) / (T V_th) per neuron: all that separates the rate from
    the ANN's affine map; in (-1/T, 0] (Sec. 3.3) only with v(0) = 0 and currents in [0, V_th]."""
    return (v0 - v_T) / (T * v_th)


def eq11_rate(mean_current, v0, v_T, v_th, T: int):
    """Eq. 11, the firing rate from the mean current ``(1/T) sum_t I(t)`` (Eq. 7-10), exact up
    to rounding for any weights, inputs, thresholds, v(0) and T:

        r^l = (W^l r^{l-1} V_th^{l-1} + b^l) / V_th^l  +  (v^l(0) - v^l(T)) / (T V_th^l)"""
    return mean_current / v_th + error_term(v0, v_T, v_th, T)
