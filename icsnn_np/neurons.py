"""The integrate-and-fire (IF) neuron with soft reset (paper Eq. 2-6).

For every neuron of a layer l and every time step t:

    v_temp(t) = v(t-1) + I(t)                         (Eq. 2 / Eq. 4, I(t) = W x(t) + b)
    theta(t)  = 1 if v_temp(t) > V_th else 0          (Eq. 6)
    v(t)      = v_temp(t) - theta(t) * V_th           (Eq. 3 / Eq. 5, "soft reset")
    output    = theta(t) * V_th                       (threshold balancing: a spike carries V_th)

``IFNode`` replaces a ReLU in a converted network. It processes a *chunk* of time steps at
once: its input current has shape (Tc*N, ...) (time-major, one slice per step) or (N, ...)
when the current is the same at every step (direct coding into the first layer), and it
returns the (Tc*N, ...) output spikes times V_th. The state v carries over between chunks,
so running T steps as one chunk or as T chunks of one step gives identical spikes.

``v_th`` and ``v0`` (the initial potential v(0), the paper's ``init_mem``) broadcast against
one sample's neuron shape: a scalar (per layer), (C, 1, 1) (per channel) or (C, H, W) (per
neuron); for a linear layer (F,) is both per channel and per neuron.
"""
from __future__ import annotations

import numpy as np

from .backend import xp_of


class IFNode:
    """A layer of IF neurons (Eq. 2-6) with optional records of its activity.

    Records (when ``record=True`` in ``reset``), each of shape (N, *neuron_shape):
      ``spike_count``  number of spikes over the steps run so far
      ``first_spike``  step (1-based) of the first spike, 0 if the neuron never fired (Fig. 6)
    and always ``v`` (after the last step this is v(T), which Alg. 2 reads).
    """

    def __init__(self, v_th=1.0, v0=0.0, name: str = ""):
        self.v_th = v_th
        self.v0 = v0
        self.name = name
        self.source = None       # the Conv2d/Linear whose output drives this node (Alg. 1)
        self.v = None
        self.spike_count = None
        self.first_spike = None
        self.t = 0               # time steps run since reset
        self.n = 0               # batch size since reset
        self.chunk = 1           # time steps in the chunk being processed (set by the engine)
        self.children = {}       # a leaf, for tree traversals shared with layers
        self.params = {}

    def __repr__(self):
        return f"IFNode({self.name})"

    # ------------------------------------------------------------------ state
    def reset(self, n: int, record: bool = False, count: bool = False):
        """Forget the state: the next input starts at t = 1 with v = v(0) for ``n`` samples.

        ``count`` keeps spike counts only; ``record`` keeps counts and first-spike times.
        """
        self.v = None
        self.n = n
        self.t = 0
        self._record = record
        self._count = count or record
        self.spike_count = None
        self.first_spike = None

    def _init_state(self, sample_shape, xp, dtype):
        shape = (self.n,) + tuple(sample_shape)
        v_th = xp.asarray(self.v_th, dtype=dtype)
        v0 = xp.asarray(self.v0, dtype=dtype)
        if v_th.ndim > len(sample_shape) or v0.ndim > len(sample_shape):
            raise ValueError(f"{self.name}: v_th {tuple(v_th.shape)} / v0 {tuple(v0.shape)} do not "
                             f"broadcast to the neuron shape {tuple(sample_shape)}")
        self._v_th = v_th
        self.v = xp.empty(shape, dtype=dtype)
        self.v[...] = v0               # broadcasting also checks v0's shape
        if self._count:
            self.spike_count = xp.zeros(shape, dtype=xp.int32)
        if self._record:
            self.first_spike = xp.zeros(shape, dtype=xp.int32)

    # ------------------------------------------------------------------ dynamics
    def forward(self, current):
        """Integrate ``chunk`` steps of ``current``; return spikes * V_th, shape (chunk*N, ...)."""
        xp = xp_of(current)
        Tc, N = self.chunk, self.n
        constant = current.shape[0] == N and Tc > 1
        if not constant and current.shape[0] != Tc * N:
            raise ValueError(f"{self.name}: expected a current with {N} or {Tc}*{N} rows, "
                             f"got {tuple(current.shape)}")
        sample_shape = current.shape[1:]
        if self.v is None:
            self._init_state(sample_shape, xp, current.dtype)
        cur = current if constant else current.reshape((Tc, N) + sample_shape)
        out = xp.empty((Tc, N) + sample_shape, dtype=current.dtype)
        v, v_th = self.v, self._v_th
        for k in range(Tc):
            v += cur if constant else cur[k]             # Eq. 2 / 4: integrate
            fired = v > v_th                              # Eq. 6: fire when v_temp > V_th
            spikes = fired * v_th                         # a spike carries V_th into layer l+1
            v -= spikes                                   # Eq. 3 / 5: soft reset by subtraction
            out[k] = spikes
            self.t += 1
            if self._count:
                self.spike_count += fired
            if self._record:
                new = fired & (self.first_spike == 0)
                self.first_spike[new] = self.t
        return out.reshape((Tc * N,) + sample_shape)

    __call__ = forward

    def v_th_full(self, xp=np):
        """V_th broadcast to the neuron shape of the last run (without the batch axis)."""
        return xp.broadcast_to(xp.asarray(self.v_th, dtype=self.v.dtype), self.v.shape[1:])
