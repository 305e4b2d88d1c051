"""SNN Calibration (Li et al., ICML 2021), beyond the paper: the ANN tells, layer after
layer, how far the SNN's output is off, and the SNN is corrected by that mean error.

[Calib] Y. Li, S. Deng, X. Dong, R. Gong, S. Gu, "A Free Lunch From ANN: Towards Efficient,
        Accurate Spiking Neural Networks Calibration", ICML 2021; github.com/yhhhli/
        SNN_Calibration (``emp_bias_corr``), commit 4aece7c.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_device
from ..checks import check_T
from ..convert import SNN, relu_outputs
from ..init_mem import compensation, host, masked
from ..simulate import simulate
from .thresholds import need_ann


def layer_errors(snn: SNN, batches, T: int, ann_outputs=None, sim=simulate, **sim_kw):
    """Per IF node, the mean output error per channel, mean over images and positions of
    ANN activation - SNN output (spikes x V_th / T): [Calib]'s e^(l) reduced per channel.

    ``ann_outputs`` (optional): ``relu_outputs(snn.ann, batches)``, to save recomputing them.
    Returns host float64 arrays of shape (C, 1, 1) (conv layers) or (F,) (linear ones).
    """
    T = check_T(T)
    ann = relu_outputs(need_ann(snn, "layer_errors"), batches) if ann_outputs is None \
        else ann_outputs
    decoded = [[] for _ in snn.nodes]
    for xb in batches:
        res = sim(snn, xb, T, record=True, **sim_kw)
        for acc, rec in zip(decoded, res.layers):
            acc.append(rec["decoded"])
    out = []
    for a, d in zip(ann, decoded):
        e = a.astype(np.float64) - np.concatenate(d).astype(np.float64)
        out.append(e.mean(axis=(0, 2, 3)).reshape(-1, 1, 1) if e.ndim == 4 else e.mean(axis=0))
    return out


def snn_calibration_init(snn: SNN, batches, T: int, start: str = "half", xp=np, keep=None,
                         sim=simulate, **sim_kw):
    """SNN Calibration, light pipeline, potential form [Calib]: v(0) per channel, layer by layer.

    For l = 1 .. L in order, with layers 1 .. l-1 already corrected, run the SNN for T steps
    on the calibration batch and set, per channel c of layer l,

        v^l_c(0)  <-  v^l_c(0) + T mu_c(e^l),     e^l = ANN activation - SNN output (l)

    ([Calib]'s correction by the expected conversion error; by Eq. 11 a change delta of v(0)
    moves the layer's mean output by delta/T, so T mu(e) cancels the mean error as long as
    v(T) does not move with it: then the error left is mean(change of v(T))/T exactly).
    The ANN is only read: its weights, which the SNN shares, are never written.

    Readings (the published method states the correction on the bias, b <- b + mu(e) each
    step, or on v(0) per neuron, "potential calibration"; its code corrects one batch):
      * potential, per channel: the per-channel mean of the light pipeline applied to v(0)
        (T mu(e) once instead of mu(e) every step: the same mean shift by Eq. 11, and no
        copy of the ANN's layers is needed, whose weights the SNN shares);
      * start = "half": v(0) = V_th/2 before correcting, the total of the theta/(2T) that
        [Calib]'s code adds to every step (its ``enable_shift``); "zero" starts at 0;
      * the calibration images are ``batches`` as given (pass one batch for the published
        "one batch of training images").
    ``keep`` (a bool per node, the ResNet block treatment): nodes marked False stay at 0.
    Returns the v(0) list (per channel arrays on ``xp``); the SNN keeps it.
    """
    T = check_T(T)
    if start not in ("half", "zero"):
        raise ValueError(f"start must be 'half' or 'zero', got {start!r}")
    ann = relu_outputs(need_ann(snn, "SNN Calibration"), batches)
    v0 = masked(compensation(snn, T, "half") if start == "half" else [0.0] * len(snn.nodes), keep)
    for i, node in enumerate(snn.nodes):
        if keep is not None and not keep[i]:
            continue
        snn.set_v0(v0)
        err = layer_errors(snn, batches, T, ann_outputs=ann, sim=sim, **sim_kw)[i]
        if not np.all(np.isfinite(err)):
            raise ValueError(f"SNN Calibration: the output error of {node.name} is not finite")
        v0[i] = to_device(host(v0[i]) + T * err, xp)      # float64: the node casts it
    snn.set_v0(v0)
    return v0
