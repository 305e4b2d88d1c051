"""Per-image corrections from a short *pre-run*: COS (offset spikes) and SRP (residual
membrane potential), beyond the paper.

Both run the image for rho (tau) steps first, then read each neuron's state and start the T
counted steps from it. ``simulate_prerun`` drives this as two runs of the SNN as it is set up
to run (``snn.run``: its engine and coding; ``simulate_cos_layerwise``: COS layer by layer,
as its code does):

    pre-run   rho steps from v(0), every layer at once; its output is not counted
    rule      per IF node, from v(rho) and the pre-run's spike counts: where each neuron of
              each image restarts (v_start) and which may fire (gate)
    counted   T steps from v_start; a neuron the gate closes gets, for that image, a
              threshold it can never reach (float max), so it neither fires nor resets

The run costs rho + T steps, which ``PreRunResult.steps`` reports (and its firing rate
counts the pre-run's spikes too). Rate coding: the counted steps replay the input from
step 1 (the same draws as the pre-run's first steps), as COS's code replays its input.

References:
  [COS] Z. Hao, J. Ding, T. Bu, T. Huang, Z. Yu, "Bridging the Gap between ANNs and SNNs by
        Calibrating Offset Spikes", ICLR 2023; github.com/hzc1208/ANN2SNN_COS (``MPLayer``).
  [SRP] Z. Hao, T. Bu, J. Ding, T. Huang, Z. Yu, "Reducing ANN-SNN Conversion Error through
        Residual Membrane Potential", AAAI 2023; github.com/hzc1208/ANN2SNN_SRP (``MPLayer``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..backend import to_device, to_host, xp_of
from ..simulate import SimResult

PRERUN_STEPS = 4          # rho (COS) and tau (SRP): both papers' CIFAR setting


@dataclass(frozen=True)
class PreRun:
    """``steps`` (rho) uncounted steps, then every IF node restarts as
    ``rule(v, spike_count, v0, v_th) -> (v_start, gate)`` says (host arrays (N, ...); None
    for v_start = v(0) again, None for gate = every neuron may fire)."""
    steps: int
    rule: Callable
    name: str = ""


@dataclass
class PreRunResult(SimResult):
    """A SimResult whose run began with ``prerun`` uncounted steps (their spikes per node in
    ``prerun_spikes``): ``steps`` and the firing rate count them."""
    prerun: int = 0
    prerun_spikes: list = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Every step the network ran: the pre-run's and the T counted ones."""
        return self.prerun + self.T

    def total_spikes(self) -> int:
        return sum(self.spikes) + sum(self.prerun_spikes)

    def firing_rate(self) -> float:
        """Mean spikes per neuron per step over all IF nodes and samples, pre-run included."""
        n = self.output.shape[0]
        return self.total_spikes() / max(1, n * self.steps * sum(self.neurons))


def check_steps(n) -> int:
    """A number of pre-run steps: an integer >= 0."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"pre-run steps must be an integer >= 0, got {n!r}")
    return int(n)


def check_prerun(prerun):
    """``prerun`` if it is a valid PreRun, else a ValueError."""
    if not isinstance(prerun, PreRun) or not callable(prerun.rule):
        raise ValueError(f"prerun must be a PreRun(steps, rule), got {prerun!r}")
    check_steps(prerun.steps)
    return prerun


def simulate_prerun(snn, x, T: int, prerun: PreRun, count: bool = False,
                    record: bool = False, keep_v: bool = False, **coding) -> PreRunResult:
    """``snn.run(x, T, ...)`` after ``prerun``'s steps and rule (``coding``: overrides the
    SNN's input coding, e.g. another seed); the SNN's v(0) and V_th are restored after."""
    rho = check_prerun(prerun).steps
    run = runner(snn, x, coding)
    if rho == 0:
        res = run(T, count=count, record=record, keep_v=keep_v)
        return PreRunResult(**vars(res), prerun=0, prerun_spikes=[0] * len(res.spikes))
    pre = run(rho, record=True)                            # v(rho) and spike counts, on the host
    xp, saved = xp_of(x), [(n.v0, n.v_th) for n in snn.nodes]
    try:
        for node, rec in zip(snn.nodes, pre.layers):
            shape = rec["v_T"].shape
            v0 = np.broadcast_to(host(node.v0), shape)
            v_th = np.broadcast_to(host(node.v_th), shape)
            v_start, gate = prerun.rule(rec["v_T"], rec["spike_count"], v0, v_th)
            if v_start is not None:
                node.v0 = to_device(np.asarray(v_start, x.dtype), xp)     # per image and neuron
            if gate is not None:                     # out of reach: no spike, no reset
                node.v_th = to_device(np.where(gate, v_th, np.finfo(x.dtype).max).astype(x.dtype), xp)
        res = run(T, count=count, record=record, keep_v=keep_v)
    finally:
        for node, (v0, v_th) in zip(snn.nodes, saved):
            node.v0, node.v_th = v0, v_th
    return PreRunResult(**vars(res), prerun=rho, prerun_spikes=pre.spikes)


def simulate_cos_layerwise(snn, x, T: int, rho: int = PRERUN_STEPS, count: bool = False,
                           record: bool = False, keep_v: bool = False, **coding) -> PreRunResult:
    """COS as its code runs it ([COS] ``MPLayer``): layer by layer, each IF node pre-runs rho
    steps on the output of the layers below *as calibrated*, takes ``cos_rule``'s v(0), and
    the whole sequence is replayed from step 1 (rate coding draws the same steps again).

    Layer l's pre-run input is what the calibrated layers below emit in their first rho
    steps, so it is a whole-network run of rho steps with layers < l started from their
    chosen v(0) and the rest from theirs. Run causally, layer l can only start once layer
    l - 1 has replayed rho steps: L rho + T steps in all, which the result reports (its
    pre-run spikes: each layer's own in its pre-run). v(0) is restored afterwards.
    """
    check_steps(rho)
    xp, saved, spikes = xp_of(x), [n.v0 for n in snn.nodes], []
    run = runner(snn, x, coding)
    try:
        for i, node in enumerate(snn.nodes):
            if rho == 0:
                break
            rec = run(rho, record=True)
            state = rec.layers[i]
            shape = state["v_T"].shape
            v_start, _ = cos_rule(state["v_T"], state["spike_count"],
                                  np.broadcast_to(host(node.v0), shape),
                                  np.broadcast_to(host(node.v_th), shape))
            node.v0 = to_device(np.asarray(v_start, x.dtype), xp)
            spikes.append(rec.spikes[i])
        res = run(T, count=count, record=record, keep_v=keep_v)
    finally:
        for node, v0 in zip(snn.nodes, saved):
            node.v0 = v0
    L = len(snn.nodes)
    return PreRunResult(**vars(res), prerun=L * rho, prerun_spikes=spikes or [0] * L)


def runner(snn, x, coding: dict):
    """``run(steps, **record)``: ``snn.run`` on ``x`` with ``coding`` over the SNN's own."""
    return lambda steps, **record: snn.run(x, steps, **coding, **record)


def host(a) -> np.ndarray:
    return to_host(a) if hasattr(a, "shape") else np.asarray(a)


def cos_rule(v, spike_count, v0, v_th):
    """[COS]'s offset-spike calibration of one IF node, from its state after rho steps.

    Started at v(0) = V_th/2, a neuron whose spike count is the ANN's rounded output ends in
    [0, V_th]; by Eq. 11 one spike too many leaves v(rho) < 0 and one too few v(rho) > V_th.
    Shifting v(0) by -V_th (+V_th) removes (adds) that spike ([COS] Fig. 2). Per image and
    neuron: v_start = v(0) - V_th where v(rho) < 0 and the neuron fired, v(0) + V_th where
    v(rho) > V_th, else v(0).

    Readings: the shift is exactly V_th; the official code (ANN2SNN_COS ``MPLayer``, commit
    ecb3587) shifts by max(1, v_temp_min - 0.999) V_th down and max(1, 1.001 - v_max) V_th up
    (tutorial 8, section 2), and fires on >=, ours on v > V_th (Eq. 6).
    """
    shift = (v > v_th).astype(v.dtype) - ((v < 0) & (spike_count > 0)).astype(v.dtype)
    return v0 + shift * v_th, None


def srp_rule(v, spike_count, v0, v_th):
    """[SRP]'s residual-membrane-potential mask of one IF node, after tau pre-run steps.

    Started at v(0) = V_th/2, a neuron that fires although its ANN output is 0 (the largest
    unevenness error, [SRP]) ends the pre-run with v(tau) <= 0: it may not fire during the T
    counted steps. Every neuron restarts from v(0).

    Readings: v(tau) <= 0 (the paper; the code keeps a margin, v > 0.001 V_th); a silenced
    neuron neither fires nor resets, so Eq. 11 stays exact with r = 0 (the code lets it reset
    and drops its output: the same spikes out).
    """
    return None, v > 0


def cos_prerun(steps: int = PRERUN_STEPS) -> PreRun:
    """COS with ``steps`` (rho) pre-run steps of the whole network at once, then ``cos_rule``
    (our reading; ``simulate_cos_layerwise`` is the published one): rho + T steps."""
    return PreRun(int(steps), cos_rule, "cos")


def srp_prerun(steps: int = PRERUN_STEPS) -> PreRun:
    """SRP: ``steps`` (tau) pre-run steps, then ``srp_rule``; the run costs tau + T steps."""
    return PreRun(int(steps), srp_rule, "srp")
