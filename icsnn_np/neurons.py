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
from .threads import parallel_for


# Neurons per cache tile of the CPU update loop (v, the mask and a step of the current, in L2).
IF_TILE_ELEMENTS = 1 << 16


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
        # a parameter-free leaf, so Module traversals of an SNN tree (eval, state_dict,
        # num_parameters, to) pass through IF nodes
        self.children = {}
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = False

    def __repr__(self):
        return f"IFNode({self.name})"

    def named_modules(self, prefix: str = ""):
        """A leaf of the module tree (see ``layers.Module.named_modules``)."""
        yield prefix, self

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

    def _init_state(self, sample_shape, xp, dtype, like=None):
        """Allocate v (and the records) for ``n`` samples, in the memory order of ``like``."""
        shape = (self.n,) + tuple(sample_shape)
        v_th = xp.asarray(self.v_th, dtype=dtype)
        v0 = xp.asarray(self.v0, dtype=dtype)
        if v_th.ndim > len(sample_shape) or v0.ndim > len(sample_shape):
            raise ValueError(f"{self.name}: v_th {tuple(v_th.shape)} / v0 {tuple(v0.shape)} do not "
                             f"broadcast to the neuron shape {tuple(sample_shape)}")
        self._v_th = v_th
        if like is None:
            self.v = xp.empty(shape, dtype=dtype)
        else:                          # e.g. channels-last after a conv: elementwise ops stay in order
            self.v = xp.empty_like(like, dtype=dtype, shape=shape)
        self.v[...] = v0               # broadcasting also checks v0's shape
        if self._count:
            self.spike_count = xp.zeros_like(self.v, dtype=xp.int32)
        if self._record:
            self.first_spike = xp.zeros_like(self.v, dtype=xp.int32)

    # ------------------------------------------------------------------ dynamics
    def forward(self, current, out=None):
        """Integrate ``chunk`` steps of ``current``; return spikes * V_th, shape (chunk*N, ...).

        ``out`` (optional): an earlier output of this node whose buffer may be overwritten.
        """
        xp = xp_of(current)
        Tc, N = self.chunk, self.n
        constant = current.shape[0] == N and Tc > 1
        if not constant and current.shape[0] != Tc * N:
            raise ValueError(f"{self.name}: expected a current with {N} or {Tc}*{N} rows, "
                             f"got {tuple(current.shape)}")
        sample_shape = current.shape[1:]
        if self.v is None:
            self._init_state(sample_shape, xp, current.dtype, like=current)
        cur = current if constant else current.reshape((Tc, N) + sample_shape)
        # the output and the scratch mask keep the current's memory order; every step
        # writes into them in place (no temporaries in the loop)
        shape = (Tc * N,) + sample_shape
        if (out is None or out.dtype != current.dtype or out.shape[1:] != sample_shape
                or out.shape[0] < Tc * N):
            out = xp.empty_like(current, shape=shape)
        out = out[:Tc * N].reshape((Tc, N) + sample_shape)
        v_th, t0 = self._v_th, self.t
        per_sample = max(1, self.v[0].size)
        # On the CPU a tile of samples runs all Tc steps while its v stays in cache.
        tile = max(1, IF_TILE_ELEMENTS // per_sample) if xp is np else N

        def steps(n0, n1):
            """Run the chunk for samples n0..n1 (neurons are independent: any split is exact)."""
            fired = xp.empty_like(self.v[n0:min(n1, n0 + tile)], dtype=bool)
            for a in range(n0, n1, tile):
                b = min(n1, a + tile)
                v, f = self.v[a:b], fired[:b - a]
                c = cur[a:b] if constant else cur[:, a:b]
                o = out[:, a:b]
                for k in range(Tc):
                    v += c if constant else c[k]          # Eq. 2 / 4: integrate
                    xp.greater(v, v_th, out=f)            # Eq. 6: fire when v_temp > V_th
                    spikes = o[k]
                    xp.multiply(f, v_th, out=spikes)      # a spike carries V_th into layer l+1
                    v -= spikes                           # Eq. 3 / 5: soft reset by subtraction
                    if self._count:
                        self.spike_count[a:b] += f
                    if self._record:
                        first = self.first_spike[a:b]
                        first[f & (first == 0)] = t0 + k + 1

        if xp is np:
            parallel_for(steps, N, Tc * self.v.size)
        else:
            steps(0, N)
        self.t += Tc
        return out.reshape((Tc * N,) + sample_shape)

    __call__ = forward

    def v_th_full(self, xp=np):
        """V_th broadcast to the neuron shape of the last run (without the batch axis)."""
        return xp.broadcast_to(xp.asarray(self.v_th, dtype=self.v.dtype), self.v.shape[1:])
