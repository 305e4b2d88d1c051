"""Run a converted SNN for T time steps: input coding and the step-by-step simulation.

At every step t = 1 .. T the whole network runs once on that step's input: the weight
layers compute their currents, each IF node integrates, fires and resets (neurons.py), and
the output layer, which does not spike, adds its input to a running sum. The prediction is
the argmax of the time average of that sum:

    out = (1/T) sum_t readout(spikes_last(t) * V_th_last)

This is the teaching path. ``engine="fast"`` hands the same call to ``icsnn_np.fast``
(layer by layer over chunks of time steps, Winograd convolutions, threads), which returns
the same ``SimResult`` and is tested to give the same spikes.

A *pre-run* (``PreRun``, for the per-sample methods of ``methods.py``: COS, SRP) runs rho
steps first, uncounted in the output; a rule then turns each node's state at step rho into
the start of the T counted steps (``IFNode.reseed``). The run costs rho + T steps: the
SimResult says so (``prerun``, ``steps``) and counts the pre-run's spikes too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .backend import to_host, xp_of
from .checks import check_batch, check_choice, check_normalisation, check_T
from .progress import advance
from .resources import check_memory

CODINGS = ("direct", "rate")
ENGINES = ("reference", "fast")


def check_input(snn, x, coding="direct", mean=None, std=None):
    """The checks every simulation makes once, before any work: a non-empty, finite,
    floating-point (normalised) batch of the first layer's shape; mean/std for rate coding."""
    check_choice(coding, CODINGS, "input coding")
    if coding == "rate" and (mean is None or std is None):
        raise ValueError("rate coding needs the normalisation mean and std of the inputs")
    if coding == "rate":
        check_normalisation(mean, std, "rate coding")
    in_ch = getattr(snn.flat[0], "in_channels", None)
    if x.ndim != 4 or (in_ch is not None and x.shape[1] != in_ch):
        raise ValueError(f"expected a normalised batch (N, {in_ch or 'C'}, H, W), got {tuple(x.shape)}")
    check_batch(x, "the input batch")


# --------------------------------------------------------------------------- coding
def rate_encode(x_norm, mean, std, t0: int, Tc: int, seed: int):
    """Bernoulli rate coding of a normalised batch for steps t0+1 .. t0+Tc -> (Tc*N, C, H, W).

    The paper rate-codes its inputs (Fig. 3) but does not say how. The ANN was trained on
    normalised inputs (x/255 - mean)/std, which have both signs; a spike train cannot be
    negative. So we code the *raw intensity* p = x/255 in [0, 1], s(t) ~ Bernoulli(p), and
    feed the first layer the normalised spike (s(t) - mean)/std: its time average tends to
    (p - mean)/std, the normalised image. Random numbers are drawn on the host from a
    Generator seeded by (seed, t), so every backend and every chunk size sees the same spikes.
    """
    if mean is None or std is None:  # np.asarray(None, float32) is NaN: would run silently
        raise ValueError("rate coding needs the normalisation mean and std of the inputs")
    xp = xp_of(x_norm)
    mean = xp.asarray(np.asarray(mean, np.float32).reshape(1, -1, 1, 1))
    std = xp.asarray(np.asarray(std, np.float32).reshape(1, -1, 1, 1))
    p = xp.clip(x_norm * std + mean, 0.0, 1.0)                       # (N, C, H, W) intensity
    out = []
    for t in range(t0, t0 + Tc):
        u = np.random.default_rng([seed, t]).random(x_norm.shape, dtype=np.float32)
        s = (xp.asarray(u) < p).astype(x_norm.dtype)                 # host -> device
        out.append((s - mean) / std)
    return xp.concatenate(out, axis=0)


# --------------------------------------------------------------------------- pre-run
@dataclass(frozen=True)
class PreRun:
    """``steps`` (rho) uncounted steps before the T counted ones, all layers at once from
    their v(0); then every IF node restarts as ``rule(node) -> (v_start, gate)`` says
    (``IFNode.reseed``). Input steps go on: rate coding draws steps rho+1 .. rho+T next."""
    steps: int
    rule: Callable
    name: str = ""


def check_prerun(prerun):
    """``prerun`` itself if it is None or a valid PreRun, else a ValueError."""
    if prerun is None:
        return None
    if not isinstance(prerun, PreRun) or not callable(prerun.rule):
        raise ValueError(f"prerun must be a PreRun(steps, rule), got {prerun!r}")
    if isinstance(prerun.steps, bool) or not isinstance(prerun.steps, (int, np.integer)) \
            or prerun.steps < 0:
        raise ValueError(f"pre-run steps must be an integer >= 0, got {prerun.steps!r}")
    return prerun


def start_prerun(nodes, n: int, prerun, count: bool, record: bool) -> int:
    """Reset ``nodes`` for ``n`` samples: for the pre-run (spikes counted, the rules need them)
    when there is one, else for the counted steps. Returns the pre-run's steps (0 if none)."""
    for node in nodes:
        node.reset(n, count=count or prerun is not None, record=record and prerun is None)
    return 0 if prerun is None else int(prerun.steps)


def end_prerun(nodes, prerun, count: bool, record: bool):
    """After the pre-run's steps: every node restarts by the rule at its next step."""
    if prerun is not None:
        for node in nodes:
            node.reseed(prerun.rule, count=count, record=record)


# --------------------------------------------------------------------------- results
@dataclass
class SimResult:
    """What a simulation returns. ``output`` (N, K) is on the device; records are host arrays.

    layers[i] (when records were asked for) holds for IF node i:
      spike_count (N, ...), first_spike (N, ...) (1-based step, 0 = never), v_T (N, ...),
      decoded (N, ...) = spike_count * V_th / T (the layer's SNN output, Fig. 7).
    """
    output: object
    T: int
    layers: list = field(default_factory=list)
    spikes: list = field(default_factory=list)    # total spikes per node (count/record runs)
    neurons: list = field(default_factory=list)   # neurons per sample per node
    prerun: int = 0                               # uncounted steps run before the T counted
    prerun_spikes: list = field(default_factory=list)  # their spikes per node (count runs)

    @property
    def steps(self) -> int:
        """Every step the network ran: pre-run + T."""
        return self.prerun + self.T

    def firing_rate(self) -> float:
        """Mean spikes per neuron per time step over all IF nodes and samples, over every
        step run (pre-run steps and their spikes included)."""
        n = self.output.shape[0]
        spikes = sum(self.spikes) + sum(self.prerun_spikes)
        return spikes / max(1, n * self.steps * sum(self.neurons))


def collect(nodes, output, T: int, record=False, keep_v=False, count=False,
            prerun: int = 0) -> SimResult:
    """A SimResult from the IF nodes' state after T steps (both engines end with this)."""
    res = SimResult(output=output, T=T, prerun=prerun)
    if count or record:
        sums = xp_of(nodes[0].v).stack([n.spike_count.sum() for n in nodes])
        res.spikes = [int(s) for s in to_host(sums)]                    # sync point: one for all
        res.prerun_spikes = [int(to_host(n.prerun_spikes.sum())) for n in nodes
                             if n.prerun_spikes is not None]
        res.neurons = [int(n.v[0].size) for n in nodes]
    if record or keep_v:
        for node in nodes:
            rec = {"v_T": to_host(node.v)}                  # sync point: records to the host
            if record:
                spikes = to_host(node.spike_count)
                rec.update(spike_count=spikes, first_spike=to_host(node.first_spike),
                           decoded=spikes * to_host(node.v_th_full(xp_of(node.v))) / T)
            res.layers.append(rec)
    return res


# --------------------------------------------------------------------------- simulation
def simulate(snn, x, T: int, coding: str = "direct", record: bool = False, keep_v: bool = False,
             count: bool = False, mean=None, std=None, seed: int = 0,
             engine: str = "reference", chunk: int | None = None, prerun=None) -> SimResult:
    """Run ``snn`` (from ``convert``) for T steps on the normalised batch ``x`` (N, C, H, W).

    ``coding``: ``direct`` feeds the image as a constant current at every step; ``rate``
    feeds Bernoulli spikes (needs the normalisation ``mean``/``std``, draws seeded by
    ``seed``). ``record`` keeps per-layer spike counts, first-spike times, v(T) and decoded
    outputs; ``keep_v`` only v(T) (what Alg. 2 needs); ``count`` only the number of spikes
    per node (``SimResult.spikes``, for firing rates). ``engine="fast"`` runs the same
    simulation in ``icsnn_np.fast`` (``chunk``: its time steps per layer pass).
    ``prerun`` (a ``PreRun``; default ``snn.prerun``, which ``calibrate_variant`` sets for
    the pre-run methods) runs its steps first, uncounted in the output (see PreRun).

    Before anything is allocated the run's memory is estimated (resources.py): one that
    cannot fit raises SimulationTooLarge, saying which chunk or batch would. Progress is
    reported to an active ``progress.tracking`` block (ETA lines for long runs).
    """
    T = check_T(T)
    check_choice(engine, ENGINES, "engine")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or chunk < 1):
        raise ValueError(f"chunk must be >= 1 (an integer number of time steps), got {chunk!r}")
    check_input(snn, x, coding, mean, std)
    prerun = check_prerun(getattr(snn, "prerun", None) if prerun is None else prerun)
    check_memory(snn, x, T, engine, chunk, count, record)    # before anything is allocated
    if engine == "fast":
        from .fast.engine import simulate_fast  # noqa: PLC0415 - only when asked for
        return simulate_fast(snn, x, T, coding=coding, record=record, keep_v=keep_v,
                             count=count, mean=mean, std=std, seed=seed, chunk=chunk,
                             prerun=prerun)
    rho = start_prerun(snn.nodes, x.shape[0], prerun, count, record)
    for t in range(rho):                        # the pre-run: its output is not counted
        h = x if coding == "direct" else rate_encode(x, mean, std, t, 1, seed)
        for m in snn.flat:
            h = m.forward(h)
        advance(x.shape[0])
    end_prerun(snn.nodes, prerun, count, record)
    total = 0
    for t in range(rho, rho + T):
        h = x if coding == "direct" else rate_encode(x, mean, std, t, 1, seed)
        for m in snn.flat:
            h = m.forward(h)
        total = total + h                       # the output layer integrates, it does not spike
        advance(x.shape[0])                     # progress.py: one clock read per step
    return collect(snn.nodes, total / T, T, record, keep_v, count, rho)


def predict(snn, x, T: int, **kw):
    """Class predictions (host int array) of the SNN after T steps."""
    return to_host(simulate(snn, x, T, **kw).output.argmax(axis=1))
