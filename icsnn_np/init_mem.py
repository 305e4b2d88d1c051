"""The paper's contribution: the initial membrane potential v(0), Alg. 1, Alg. 2 and Alg. 3.

By Eq. 11, for every neuron of layer l after T steps

    r^l V_th^l = W^l r^{l-1} V_th^{l-1} + b^l + (v^l(0) - v^l(T)) / T

so the decoded output differs from the ANN's affine map by (v(0) - v(T))/T. Choosing
v(0) close to the v(T) the network will end with cancels that error (Sec. 3.3); coding
compensation adds the expected coding loss back (Sec. 3.4). variants.py turns these into
the paper's SNN, I-SNN, C-SNN and IC-SNN.

Where the paper is ambiguous, every reading is implemented and named (README, "Readings"):
    Alg. 2 reading   raw: mean of v(T) (the paper's literal ``l.mem.mean()``)
                     remainder: mean of v(T) mod V_th, in [0, V_th) (the text's "remainder")
                     clip: mean of clip(v(T), 0, V_th)
    granularity      layer (the paper: one scalar per layer), channel, neuron
    compensation     literal: V_th/(2T) (Alg. 3 as printed)   half: V_th/2 (by Eq. 11 a shift
                     delta of v(0) moves the decoded output by delta/T as long as v(T) does not
                     move with it, which holds on average, not neuron by neuron; so V_th/2
                     cancels the expected coding error V_th/(2T), as QCFS and Bu et al. 2022
                     start their neurons; SpikingJelly offers it as an option)

Beyond the paper (named as ours): ``fixed_point_init`` repeats Alg. 2 with the v(0) it found
until v(0) ~ mean v(T), which is what Eq. 11 asks for.
"""
from __future__ import annotations

import numpy as np

from .backend import to_device, to_host
from .checks import check_choice, check_finite, check_T
from .convert import SNN
from .simulate import simulate

READINGS = ("raw", "remainder", "clip")
GRANULARITIES = ("layer", "channel", "neuron")
COMPENSATIONS = ("literal", "half")


def host(a) -> np.ndarray:
    """A scalar or a (device) array as a host array."""
    return to_host(a) if hasattr(a, "shape") else np.asarray(a)


def masked(v0s, keep):
    """``v0s`` with v(0) = 0 where ``keep`` (a bool per node, or None = all) is False."""
    return list(v0s) if keep is None else [v if k else 0.0 for v, k in zip(v0s, keep)]


# --------------------------------------------------------------------------- Alg. 1
def alg1_weight_init(snn: SNN, T: int):
    """Alg. 1 (weight-based v(0)), literally as printed; one scalar per layer.

        sum_mem = W * T + b          (elementwise on the weight tensor, bias added once per
                                      output unit, as in Eq. 7's "T b" ... the printed line)
        mem = sum_mem % V_th
        init_mem[l] = mem.mean()

    The printed algorithm multiplies the *weights* by T and adds the bias once; we keep that
    (bias broadcast over each output unit's weights). It models a neuron that receives a
    spike on every input at every step, which the paper itself calls "more extreme".
    """
    T = check_T(T)
    out = []
    for node in snn.nodes:
        src = node.source
        if src is None:
            raise ValueError(f"{node.name}: no weight layer drives this node; Alg. 1 needs one")
        W = to_host(src.params["weight"]).astype(np.float64)
        b = to_host(src.params["bias"]).astype(np.float64) if "bias" in src.params else 0.0
        b = np.reshape(b, (-1,) + (1,) * (W.ndim - 1)) if np.ndim(b) else b
        v_th = host(node.v_th).astype(np.float64)
        if v_th.ndim:  # channel-wise thresholds: one per output unit of the weight tensor
            v_th = v_th.reshape((-1,) + (1,) * (W.ndim - 1))
        mem = np.mod(W * T + b, v_th)
        out.append(np.float32(mem.mean()))
    return out


# --------------------------------------------------------------------------- Alg. 2
def _reduce(v_T: np.ndarray, v_th, reading: str, granularity: str):
    """Map the recorded v(T) (N, *shape) by ``reading`` and average to ``granularity``."""
    v = v_T.astype(np.float64)
    th = np.broadcast_to(np.asarray(v_th, dtype=np.float64), v.shape[1:])
    if reading == "remainder":
        v = np.mod(v, th)              # in [0, V_th): the remainder of the division (Sec. 3.3)
    elif reading == "clip":
        v = np.clip(v, 0.0, th)
    if granularity == "layer":
        return np.float32(v.mean())
    if granularity == "neuron" or v.ndim == 2:
        return v.mean(axis=0).astype(np.float32)
    return v.mean(axis=(0, 2, 3)).astype(np.float32).reshape(-1, 1, 1)   # per channel


def record_v_T(snn: SNN, batches, T: int, **sim_kw):
    """Run the SNN with its current v(0) on each batch; return per node the (N_total, ...) v(T).

    ``sim_kw`` go to ``simulate`` (coding, engine, chunk, mean, std, seed)."""
    per_node = [[] for _ in snn.nodes]
    for xb in batches:
        res = simulate(snn, xb, T, keep_v=True, **sim_kw)
        for acc, rec in zip(per_node, res.layers):
            acc.append(rec["v_T"])
    if not per_node[0]:
        raise ValueError("Alg. 2 needs at least one batch of training images")
    return [np.concatenate(a) for a in per_node]


def alg2_data_init(snn: SNN, batches, T: int, reading: str = "remainder",
                   granularity: str = "layer", xp=np, **sim_kw):
    """Alg. 2 (data-based v(0)): run the SNN on training images, average v(T) per layer.

    The SNN is run for T steps with whatever v(0) it has (0 for I-SNN, the compensation for
    IC-SNN); each node's v(T) is mapped by ``reading`` and averaged over all images (the
    paper's mean over batches of batch means, exact here) and over neurons per
    ``granularity``. All layers are recorded in the same run, as in the printed algorithm.
    Returns a list of v(0) values (scalars or arrays on ``xp``), aligned with ``snn.nodes``.
    """
    check_choice(reading, READINGS, "Alg. 2 reading")
    check_choice(granularity, GRANULARITIES, "granularity")
    v_Ts = record_v_T(snn, batches, check_T(T), **sim_kw)
    out = []
    for node, v_T in zip(snn.nodes, v_Ts):
        r = check_finite(_reduce(v_T, host(node.v_th), reading, granularity),
                         f"Alg. 2: the v(0) of {node.name} (the mean of its recorded v(T))")
        out.append(r if np.ndim(r) == 0 else to_device(r, xp))
    return out


# --------------------------------------------------------------------------- Alg. 3
def compensation(snn: SNN, T: int, kind: str = "literal"):
    """Coding compensation C^l per node: V_th/(2T) (``literal``, Alg. 3) or V_th/2 (``half``)."""
    check_choice(kind, COMPENSATIONS, "compensation")
    T = check_T(T)
    div = 2.0 * T if kind == "literal" else 2.0
    return [n.v_th / div for n in snn.nodes]


def alg3_ic_init(snn: SNN, batches, T: int, comp: str = "literal", reading: str = "remainder",
                 granularity: str = "layer", xp=np, keep=None, **sim_kw):
    """Alg. 3: set v(0) = C, run Alg. 2 on that SNN to get R, return final v(0) = R + C.

    ``keep`` (a bool per node, default all): nodes marked False keep v(0) = 0 throughout,
    also while Alg. 2 measures (the paper's ResNet treatment: v(0) only on the first IF
    node of each residual block, Sec. 4.3).
    """
    C = masked(compensation(snn, T, comp), keep)
    snn.set_v0(C)
    R = alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw)
    return masked([r + c for r, c in zip(R, C)], keep)


def fixed_point_init(snn: SNN, batches, T: int, reading: str = "raw", granularity: str = "layer",
                     start=None, iters: int = 5, tol: float = 1e-3, xp=np, keep=None, **sim_kw):
    """Ours, not the paper's: iterate v(0) <- mean v(T) (Alg. 2 run with the v(0) it found).

    Eq. 11 cancels its error term when v(0) equals the v(T) the network ends with; one pass
    of Alg. 2 measures v(T) of a network whose v(0) was different. Starting from ``start``
    (default: zeros), repeat until the largest change relative to V_th is below ``tol`` or
    ``iters`` passes. ``keep`` (a bool per node): nodes marked False stay at v(0) = 0.
    Returns (v0 list, number of passes run).
    """
    v0 = start if start is not None else [0.0] * len(snn.nodes)
    for it in range(1, iters + 1):
        snn.set_v0(v0)
        new = masked(alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw), keep)
        delta = max(float(np.max(np.abs(host(a) - host(b)))) / float(np.max(host(nd.v_th)))
                    for a, b, nd in zip(new, v0, snn.nodes))
        v0 = new
        if delta < tol:
            break
    return v0, it
