"""The IF update over a chunk of time steps, tiled to stay in cache, spread over threads.

``FastIFNode`` is the twin of ``neurons.IFNode`` (same Eq. 2-6, same state, same records):
it takes the currents of ``chunk`` consecutive steps at once, as a (chunk*N, ...) array
(time-major, one slice of N per step), or an (N, ...) array when the current is the same at
every step (direct coding into the first layer), and returns the (chunk*N, ...) spikes
times V_th. The state carries over between chunks, so any split of T into chunks gives the
same spikes as the step-by-step teaching node (tests/test_fast.py).

On the CPU, a tile of samples runs all steps of the chunk while its v stays in cache
(IF_TILE_ELEMENTS), and the tiles are spread over the threads; every step writes into
preallocated arrays (no temporaries in the loop).
"""
from __future__ import annotations

import numpy as np

from ..backend import xp_of
from ..neurons import IFNode
from .cache import l2_times
from .threads import parallel_for
from .twin import Twin

# Neurons per tile of the CPU update loop: v of a tile fills the L2 cache (cache.py; 1 MB
# where unknown). Smaller tiles cost more NumPy calls than their cache hits save: on an AMD
# EPYC with 1 MB of L2, 64 K float32 neurons ran the vgg_cpu SNN about 10 % slower than 256 K.
# A number here overrides it (tests).
IF_TILE_ELEMENTS = None


def tile_elements(itemsize: int) -> int:
    """IF_TILE_ELEMENTS, or the neurons of ``itemsize`` bytes that fill this CPU's L2."""
    return IF_TILE_ELEMENTS or l2_times(1, 1 << 20) // itemsize


class FastIFNode(Twin, IFNode):
    """IF neurons over chunks of time steps (see the module docstring)."""

    chunk = 1

    def begin_chunk(self, steps: int):
        """The engine announces how many time steps the next ``forward`` call covers."""
        self.chunk = steps

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
            self.start((N,) + tuple(sample_shape), xp, current.dtype)
            # the state again in the current's memory order (channels-last after a fast conv),
            # filled as start() filled it: no transposing copy of start()'s arrays
            shape = self.v.shape
            v = xp.empty_like(current, shape=shape)
            v[...] = xp.asarray(self.v0, current.dtype)
            self.v = v
            for name in ("spike_count", "first_spike"):
                if getattr(self, name) is not None:
                    setattr(self, name, xp.zeros_like(current, dtype=xp.int32, shape=shape))
        cur = current if constant else current.reshape((Tc, N) + sample_shape)
        shape = (Tc * N,) + sample_shape
        if (out is None or out.dtype != current.dtype or out.shape[1:] != sample_shape
                or out.shape[0] < Tc * N):
            out = xp.empty_like(current, shape=shape)
        out = out[:Tc * N].reshape((Tc, N) + sample_shape)
        v_th, t0 = self.v_th_dev, self.t
        per_image = v_th.ndim == self.v.ndim and v_th.shape[0] == N     # (N, ...): slice it too
        per_sample = max(1, self.v[0].size)
        tile = max(1, tile_elements(self.v.itemsize) // per_sample) if xp is np else N

        def steps(n0, n1):
            """Run the chunk for samples n0..n1 (neurons are independent: any split is exact)."""
            fired = xp.empty_like(self.v[n0:min(n1, n0 + tile)], dtype=bool)
            for a in range(n0, n1, tile):
                b = min(n1, a + tile)
                v, f, th = self.v[a:b], fired[:b - a], v_th[a:b] if per_image else v_th
                c = cur[a:b] if constant else cur[:, a:b]
                o = out[:, a:b]
                for k in range(Tc):
                    v += c if constant else c[k]          # Eq. 4: integrate
                    xp.greater(v, th, out=f)              # Eq. 6: fire when v_temp > V_th
                    spikes = o[k]
                    xp.multiply(f, th, out=spikes)        # a spike carries V_th into layer l+1
                    v -= spikes                           # Eq. 5: soft reset by subtraction
                    if self.count:
                        self.spike_count[a:b] += f
                    if self.record:
                        first = self.first_spike[a:b]
                        xp.copyto(first, t0 + k + 1, where=f & (first == 0))   # no mask sync

        if xp is np:
            parallel_for(steps, N, Tc * self.v.size)
        else:
            steps(0, N)
        self.t += Tc
        return out.reshape(shape)
