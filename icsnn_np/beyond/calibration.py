"""SNN Calibration (Li et al., ICML 2021), beyond the paper: the ANN tells, layer after
layer, how far the SNN's output is off, and the SNN is corrected by that mean error.

As the official code runs it (yhhhli/SNN_Calibration, commit 4aece7c: ``SpikeModule``,
``bias_corr_model``, ``emp_bias_corr``), with the SNN's neurons starting at v(0) = 0:

    light (``snn_calibration``)      a current added at every step: theta/(2T) (its
                                     ``enable_shift``) + the per-channel correction
                                     mu_c(ANN - SNN) of that layer, found layer by layer
    advanced (``snn_calibration_advanced``)   the theta/(2T) current, and v(0) per neuron
                                     = T mean_images(ANN - SNN), layer by layer (CIFAR's
                                     "advanced": no optimisation, no bias correction)

The currents live in ``StepCurrent`` modules put in front of the SNN's IF nodes
(``with_currents``): the ANN's weights, which the SNN shares, are never written.
``snn_calibration_v0`` is an ablation of ours: the light correction put into v(0) once.

[Calib] Y. Li, S. Deng, X. Dong, R. Gong, S. Gu, "A Free Lunch From ANN: Towards Efficient,
        Accurate Spiking Neural Networks Calibration", ICML 2021; github.com/yhhhli/SNN_Calibration.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_device, xp_of
from ..checks import check_T
from ..convert import SNN, relu_outputs
from ..init_mem import compensation, host, masked
from ..module import Module, Sequential, rebuild
from ..neurons import IFNode
from .thresholds import need_ann


class StepCurrent(Module):
    """A constant current ``current`` (a scalar, (C, 1, 1) or (F,)) added to a layer's input
    at every time step, in front of its IF node: not part of the ANN."""

    def __init__(self, current=0.0):
        super().__init__()
        self.current = current

    def forward(self, x):
        # in x's dtype: a float64 correction must not turn a float32 SNN into a float64 one
        return x + xp_of(x).asarray(self.current, dtype=x.dtype)


def with_currents(snn: SNN) -> SNN:
    """The SNN with a ``StepCurrent`` (0) in front of every IF node: the same nodes, the same
    weights (shared), one more module per node. Returns (snn, the currents, one per node)."""
    currents = []

    def leaf(m, path):
        if not isinstance(m, IFNode):
            return m
        currents.append(StepCurrent())
        return Sequential(currents[-1], m)

    cal = SNN(rebuild(snn.tree, leaf), snn.nodes, snn.blocks, snn.ann)
    cal.engine, cal.coding = snn.engine, snn.coding          # simulated as the SNN is
    return cal, currents


def layer_errors(snn: SNN, batches, T: int, ann_outputs=None, per: str = "channel", run=None):
    """Per IF node, the mean output error ANN activation - SNN output (spikes x V_th / T):
    [Calib]'s e^(l), averaged over images and positions per channel (C, 1, 1) / feature (F,)
    (``per="channel"``), or over images only, per neuron (``per="neuron"``). Host float64.
    ``ann_outputs``: ``relu_outputs(snn.ann, batches)``, to save recomputing them; ``run``
    (``simulate``'s signature, e.g. a method's ``runs.evaluate.Run``; default ``snn.run``)."""
    T = check_T(T)
    ann = relu_outputs(need_ann(snn, "layer_errors"), batches) if ann_outputs is None \
        else ann_outputs
    decoded = [[] for _ in snn.nodes]
    for xb in batches:
        for acc, rec in zip(decoded, (run(snn, xb, T, record=True) if run else snn.run(xb, T, record=True)).layers):
            acc.append(rec["decoded"])
    out = []
    for node, a, d in zip(snn.nodes, ann, decoded):
        e = a.astype(np.float64) - np.concatenate(d).astype(np.float64)
        e = e.mean(axis=0) if per == "neuron" or e.ndim == 2 else \
            e.mean(axis=(0, 2, 3)).reshape(-1, 1, 1)
        if not np.all(np.isfinite(e)):
            raise ValueError(f"SNN Calibration: the output error of {node.name} is not finite")
        out.append(e)
    return out


def _shifted(snn: SNN, T: int, shift: bool):
    """``with_currents`` with theta/(2T) in every current (or 0) and every v(0) = 0."""
    cal, currents = with_currents(snn)
    for c, th in zip(currents, compensation(snn, T, "literal")):
        c.current = th if shift else 0.0
    snn.set_v0([0.0] * len(snn.nodes))
    return cal, currents


def snn_calibration(snn: SNN, batches, T: int, shift: bool = True, keep=None):
    """[Calib]'s light pipeline: for l = 1 .. L in order, with layers 1 .. l-1 corrected,
    run T steps on ``batches`` and add mu_c(ANN - SNN) of layer l to its current, per channel.
    v(0) = 0; ``shift``: theta/(2T) in every current. ``keep`` False: a node's current stays
    its shift (the ResNet block treatment). Returns the SNN to simulate (``with_currents``)."""
    T, xp = check_T(T), xp_of(batches[0])
    cal, currents = _shifted(snn, T, shift)
    ann = relu_outputs(need_ann(snn, "SNN Calibration"), batches)
    for i, c in enumerate(currents):
        if keep is None or keep[i]:
            err = layer_errors(cal, batches, T, ann_outputs=ann)[i]
            c.current = to_device(host(c.current) + err, xp)
    return cal


def snn_calibration_advanced(snn: SNN, batches, T: int, keep=None):
    """[Calib]'s advanced pipeline on CIFAR: the theta/(2T) currents, and per neuron
    v(0) = T mean_images(ANN - SNN) of each layer, layer by layer (no bias correction).
    Returns the SNN to simulate; its nodes keep the v(0) found."""
    T, xp = check_T(T), xp_of(batches[0])
    cal, _ = _shifted(snn, T, True)
    ann = relu_outputs(need_ann(snn, "SNN Calibration"), batches)
    v0 = [0.0] * len(snn.nodes)
    for i in range(len(snn.nodes)):
        if keep is None or keep[i]:
            err = layer_errors(cal, batches, T, ann_outputs=ann, per="neuron")[i]
            v0[i] = to_device(T * err, xp)
            snn.set_v0(v0)
    return cal


def snn_calibration_v0(snn: SNN, batches, T: int, keep=None):
    """Ablation, ours: the light correction put into v(0) once, per channel, from V_th/2:
    v_c(0) <- v_c(0) + T mu_c(e), layer by layer, no currents.

    By Eq. 11 a shift d of v(0) moves the decoded output by d/T exactly as a current d/T at
    every step does, as long as v(T) moves neither: the two forms agree while every v(0)
    stays below V_th. A v(0) above V_th fires in the first steps whatever the input, even
    where the ANN's output is 0, and the error then grows with T (measured on vgg16_cpu:
    results/methods_vgg16_cpu.md). Returns the v(0) list; the SNN keeps it.
    """
    T, xp = check_T(T), xp_of(batches[0])
    ann = relu_outputs(need_ann(snn, "SNN Calibration"), batches)
    v0 = masked(compensation(snn, T, "half"), keep)
    for i in range(len(snn.nodes)):
        if keep is None or keep[i]:
            snn.set_v0(v0)
            err = layer_errors(snn, batches, T, ann_outputs=ann)[i]
            v0[i] = to_device(host(v0[i]) + T * err, xp)      # float64: the node casts it
    snn.set_v0(v0)
    return v0
