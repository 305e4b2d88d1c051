"""Run a converted SNN for T time steps: input coding and the step-by-step simulation.

At every step t = 1 .. T the whole network runs once on that step's input: the weight
layers compute their currents, each IF node integrates, fires and resets (neurons.py), and
the output layer, which does not spike, adds its input to a running sum. The prediction is
the argmax of its time average, out = (1/T) sum_t readout(spikes_last(t) * V_th_last)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import to_host, xp_of
from .checks import check_batch, check_choice, check_finite, check_T

CODINGS = ("direct", "rate")


def simulate(snn, x, T: int, coding: str = "direct", mean=None, std=None, seed: int = 0,
             count: bool = False, record: bool = False, keep_v: bool = False):
    """Run ``snn`` (from ``convert``) for T steps on the normalised batch ``x`` (N, C, H, W): a
    SimResult. ``coding``: ``direct`` feeds the image as a constant current at every step, ``rate``
    Bernoulli spikes (``rate_encode``; ``mean``/``std`` undo the normalisation, ``seed`` seeds the
    draws). ``count``: spikes per node; ``record``: all SimResult holds; ``keep_v``: v(T) (Alg. 2)."""
    T = check_input(snn, x, T, coding, mean, std)
    for node in snn.nodes:
        node.reset(x.shape[0], count=count, record=record)
    total = 0
    with np.errstate(over="ignore", invalid="ignore"):     # an overflow is refused below
        for t in range(T):
            h = x if coding == "direct" else rate_encode(x, mean, std, t, seed)
            for m in snn.flat:
                h = m.forward(h)
            total = total + h                   # the output layer integrates, it does not spike
    return collect(snn.nodes, total / T, T, count, record, keep_v)


def rate_encode(x_norm, mean, std, t: int, seed: int):
    """Bernoulli rate coding of a normalised batch (N, C, H, W) at step t+1 (t from 0). The paper
    rate-codes its inputs (Fig. 3) without saying how; our reading: the raw intensity p = x/255
    in [0, 1] is coded, s(t) ~ Bernoulli(p), and the first layer gets (s(t) - mean)/std, whose
    time average tends to the normalised image. Draws are seeded by (seed, t) on the host:
    every backend and engine sees the same spikes."""
    if mean is None or std is None:  # np.asarray(None, float32) is NaN: would run silently
        raise ValueError("rate coding needs the normalisation mean and std of the inputs")
    xp = xp_of(x_norm)
    mean = xp.asarray(np.asarray(mean, np.float32).reshape(1, -1, 1, 1))
    std = xp.asarray(np.asarray(std, np.float32).reshape(1, -1, 1, 1))
    p = xp.clip(x_norm * std + mean, 0.0, 1.0)                       # (N, C, H, W) intensity
    u = np.random.default_rng([seed, t]).random(x_norm.shape, dtype=np.float32)
    return ((xp.asarray(u) < p).astype(x_norm.dtype) - mean) / std   # host -> device


def check_input(snn, x, T, coding="direct", mean=None, std=None) -> int:
    """Once, before any work: T, the coding, a finite float batch of the network's shape."""
    check_choice(coding, CODINGS, "input coding")
    check_batch(x, "the input batch", snn.tree)       # also its channels and size, in those terms
    if coding == "rate":                   # a NaN current never fires: refused, not run
        if mean is None or std is None:
            raise ValueError("rate coding needs the normalisation mean and std of the inputs")
        try:
            m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"rate coding: mean {mean!r} and std {std!r} must be numbers") from None
        if {m.size, s.size} - {1, x.shape[1]}:
            raise ValueError(f"rate coding: mean/std hold {m.size}/{s.size} values for images "
                             f"with {x.shape[1]} channels: one per channel")
        if not np.all(check_finite(s, "rate coding: std") > 0) or check_finite(m, "rate coding: mean") is None:
            raise ValueError(f"rate coding: std {list(np.ravel(std))} must be > 0")
    return check_T(T)


@dataclass
class SimResult:
    """``output`` (N, K) on the device; ``spikes`` per node (count/record runs); ``layers[i]``
    (host arrays) per IF node: v_T, and with record spike_count, first_spike (1-based, 0 =
    never), decoded = spike_count * V_th / T (Fig. 7)."""
    output: object
    T: int
    layers: list = field(default_factory=list)
    spikes: list = field(default_factory=list)
    neurons: list = field(default_factory=list)   # neurons per sample, per node

    def total_spikes(self) -> int:
        return sum(self.spikes)

    def firing_rate(self) -> float:
        """Mean spikes per neuron per step over all IF nodes and samples."""
        return self.total_spikes() / max(1, self.output.shape[0] * self.T * sum(self.neurons))


def collect(nodes, output, T: int, count=False, record=False, keep_v=False) -> SimResult:
    """A SimResult from the IF nodes' state after T steps (every engine ends with this). An inf
    crosses every threshold, so a potential that overflowed is refused here, not counted."""
    xp = xp_of(output)
    if not bool(xp.stack([xp.isfinite(n.v).all() for n in nodes] + [xp.isfinite(output).all()]).all()):
        raise ValueError("the SNN's potentials or outputs contain NaN or inf: the inputs overflow "
                         "float32 inside the network (are the images normalised?)")   # a sync point
    res = SimResult(output=output, T=T)
    if count or record:
        sums = xp.stack([n.spike_count.sum() for n in nodes])
        res.spikes = [int(s) for s in to_host(sums)]                    # sync point: one for all
        res.neurons = [int(n.v[0].size) for n in nodes]
    if record or keep_v:
        for node in nodes:
            rec = {"v_T": to_host(node.v)}                  # sync point: records to the host
            if record:
                spikes = to_host(node.spike_count)
                rec.update(spike_count=spikes, first_spike=to_host(node.first_spike),
                           decoded=spikes * to_host(node.v_th_dev) / T)   # broadcasts
            res.layers.append(rec)
    return res
