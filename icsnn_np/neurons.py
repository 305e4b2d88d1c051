"""The integrate-and-fire (IF) neuron with soft reset (paper Eq. 2-6), and Eq. 11.

For every neuron of a layer l, at every time step t = 1 .. T:

    v_temp(t) = v(t-1) + I(t)                 Eq. 4 (Eq. 2):  I(t) = W x(t) + b, the input current
    theta(t)  = 1 if v_temp(t) > V_th else 0  Eq. 6:  fire
    v(t)      = v_temp(t) - theta(t) V_th     Eq. 5 (Eq. 3):  "soft reset", by subtraction
    output    = theta(t) V_th                 threshold balancing: a spike carries V_th onward

``IFNode`` replaces a ReLU in a converted network; each ``forward`` call is one time step
for a whole layer at once. Summing Eq. 5 over the T steps gives Eq. 11, the identity the
paper's method is built on (``eq11_rate`` below).
"""
from __future__ import annotations

import numpy as np

from .backend import xp_of
from .checks import check_finite, check_threshold
from .module import Module


class IFNode(Module):
    """A layer of IF neurons (Eq. 2-6), one time step per ``forward`` call.

    ``v_th`` and ``v0`` (the initial potential v(0), the paper's ``init_mem``) broadcast
    against one sample's neuron shape: a scalar (per layer), (C, 1, 1) (per channel) or
    (C, H, W) (per neuron). State, kept between calls until ``reset``:
      ``v``            membrane potential; after T steps it is v(T), which Alg. 2 reads
      ``spike_count``  spikes per neuron so far (when counting)
      ``first_spike``  step (1-based) of each neuron's first spike, 0 = none yet (Fig. 6)
    After a pre-run (``reseed``, simulate's ``prerun``): ``gate`` (N, ...) bool, None = all:
    only gated neurons may fire; ``prerun_spikes`` the spike counts of the pre-run.
    """

    def __init__(self, v_th=1.0, v0=0.0, name: str = ""):
        super().__init__()
        self.v_th, self.v0, self.name = v_th, v0, name
        self.source = None       # the Conv2d/Linear whose output drives this node (Alg. 1)
        self.training = False
        self.reset(0)

    def extra_repr(self):
        return self.name

    def reset(self, n: int, count: bool = False, record: bool = False):
        """Forget the state: the next call is step t = 1, with v = v(0), for ``n`` samples.

        ``count`` keeps spike counts; ``record`` keeps counts and first-spike times.
        """
        self.n, self.t, self.v = n, 0, None
        self.count, self.record = count or record, record
        self.spike_count = self.first_spike = None
        self.gate = self.pending = self.prerun_spikes = None

    def reseed(self, rule, count: bool = False, record: bool = False):
        """End a pre-run: the next call is counted step t = 1 again (simulate's ``prerun``).

        Before that step ``rule(node) -> (v_start, gate)`` reads the pre-run's last state
        (``v`` = v(rho), ``spike_count``, ``v0``, ``v_th_dev``): each neuron restarts from
        ``v_start`` ((N, ...) on the device; None = v(0) again) and, where ``gate`` is False,
        cannot fire (None = everywhere). ``count``/``record`` as in ``reset``, from zero.
        """
        self.pending, self.t = (rule, count or record, record), 0

    def _restart(self, xp):
        """Apply the pending pre-run ``rule`` (``reseed``): the state of counted step 0."""
        rule, self.count, self.record = self.pending
        v_start, gate = rule(self)
        self.pending, self.prerun_spikes, self.gate = None, self.spike_count, gate
        self.v[...] = xp.asarray(self.v0, dtype=self.v.dtype) if v_start is None else v_start
        self.spike_count = xp.zeros_like(self.v, dtype=xp.int32) if self.count else None
        self.first_spike = xp.zeros_like(self.v, dtype=xp.int32) if self.record else None

    def start(self, sample_shape, xp, dtype):
        """Allocate v = v(0) (and the records) for ``n`` samples of ``sample_shape``.

        Checks V_th and v(0) once here, where they enter, never in the time loop: a NaN
        never crosses a threshold, so it would silently silence the neuron.
        """
        v_th = check_threshold(self.v_th, self.name or "IF node")
        check_finite(self.v0, f"{self.name or 'IF node'}: v(0)")   # a device v(0): one sync per reset
        v0 = xp.asarray(self.v0, dtype=dtype)
        if np.ndim(v_th) > len(sample_shape) or v0.ndim > len(sample_shape):
            raise ValueError(f"{self.name}: v_th {np.shape(v_th)} / v0 {tuple(v0.shape)} do not "
                             f"broadcast to the neuron shape {tuple(sample_shape)}")
        self.v_th_dev = xp.asarray(v_th, dtype=dtype)
        self.v = xp.empty((self.n,) + tuple(sample_shape), dtype=dtype)
        self.v[...] = v0                     # broadcasting also checks v0's shape
        if self.count:
            self.spike_count = xp.zeros(self.v.shape, dtype=xp.int32)
        if self.record:
            self.first_spike = xp.zeros(self.v.shape, dtype=xp.int32)

    def forward(self, current):
        """One time step: integrate ``current`` (N, ...), fire, reset; return spikes * V_th."""
        xp = xp_of(current)
        if current.shape[0] != self.n:
            raise ValueError(f"{self.name}: expected a current for {self.n} samples, "
                             f"got {tuple(current.shape)}")
        if self.v is None:
            self.start(current.shape[1:], xp, current.dtype)
        if self.pending is not None:               # the first counted step after a pre-run
            self._restart(xp)
        self.t += 1
        self.v += current                          # Eq. 4: v_temp(t) = v(t-1) + W x(t) + b
        fired = self.v > self.v_th_dev             # Eq. 6: theta(t) = 1 if v_temp(t) > V_th
        if self.gate is not None:                  # silenced after a pre-run (SRP): no spike,
            fired &= self.gate                     # no reset; v integrates on (Eq. 11 holds)
        spikes = fired * self.v_th_dev             # a spike carries V_th into layer l+1
        self.v -= spikes                           # Eq. 5: v(t) = v_temp(t) - theta(t) V_th
        if self.count:
            self.spike_count += fired
        if self.record:
            # not first_spike[mask] = t: a boolean-mask assignment reads the mask's count back
            # to the host on CuPy, a sync per step
            xp.copyto(self.first_spike, self.t, where=fired & (self.first_spike == 0))
        return spikes

    def backward(self, grad):  # pragma: no cover - a converted network is not trained
        raise RuntimeError("IF nodes have no gradient: train the ANN, then convert it")

    def v_th_full(self, xp=np):
        """V_th broadcast to the neuron shape of the last run (without the batch axis)."""
        return xp.broadcast_to(xp.asarray(self.v_th, dtype=self.v.dtype), self.v.shape[1:])


# --------------------------------------------------------------------------- Eq. 11
def error_term(v0, v_T, v_th, T: int):
    """Eq. 11's error term (v(0) - v(T)) / (T V_th), per neuron.

    It is the whole difference between a spiking layer's rate and the affine map of its
    input rate that the ANN computes (``eq11_rate``). Sec. 3.3 states it lies in (-1/T, 0);
    that needs v(0) = 0 and currents in [0, V_th] per step (tests and tutorial 5 show
    what breaks it: negative currents, silent neurons).
    """
    return (v0 - v_T) / (T * v_th)


def eq11_rate(mean_current, v0, v_T, v_th, T: int):
    """Eq. 11: the firing rate r^l from the time-averaged input current.

        r^l = (W^l r^{l-1} V_th^{l-1} + b^l) / V_th^l  +  (v^l(0) - v^l(T)) / (T V_th^l)

    ``mean_current`` is (1/T) sum_t I(t) = W^l r^{l-1} V_th^{l-1} + b^l (Eq. 9 turns the
    summed input spikes into the previous layer's rate). Derivation: sum Eq. 5 over
    t = 1..T (Eq. 7), write the spike sums as T r (Eq. 8, 9) and divide by T V_th (Eq. 10).
    This is an identity of the simulation, exact up to float rounding, for any weights,
    inputs, thresholds, v(0) and T.
    """
    return mean_current / v_th + error_term(v0, v_T, v_th, T)
