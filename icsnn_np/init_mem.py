"""The paper's contribution: the initial membrane potential v(0), Alg. 1, Alg. 2 and Alg. 3.

By Eq. 11, r^l V_th^l = W^l r^{l-1} V_th^{l-1} + b^l + (v^l(0) - v^l(T)) / T, so a v(0) close
to the v(T) the network ends with cancels the error (Sec. 3.3); coding compensation adds the
expected coding loss back (Sec. 3.4). The paper's ambiguities, named (docs/readings.md):

    Alg. 2 reading   raw: mean of v(T), the printed ``l.mem.mean()``; remainder: mean of
                     v(T) mod V_th, the text's "remainder" (the default); clip: of clip(v(T), 0, V_th)
    granularity      layer (the paper: one scalar per layer), channel, neuron
    compensation     literal: V_th/(2T) as Alg. 3 prints it; half: V_th/2 (our reading of
                     Sec. 3.4 through Eq. 11: a shift d of v(0) moves the output by d/T)
"""
from __future__ import annotations

import numpy as np

from .backend import to_device, to_host, xp_of
from .checks import check_choice, check_finite, check_T
from .convert import SNN

READINGS = ("raw", "remainder", "clip")
READING = "remainder"  # raw silences the net: silent neurons end far below 0 (results/vgg_cpu_cifar10.md)
GRANULARITIES = ("layer", "channel", "neuron")
COMPENSATIONS = ("literal", "half")


def host(a) -> np.ndarray:
    """A scalar or a (device) array as a host array."""
    return to_host(a) if hasattr(a, "shape") else np.asarray(a)


def masked(v0s, keep):
    """``v0s`` with v(0) = 0 where ``keep`` (a bool per node, or None = all) is False."""
    return list(v0s) if keep is None else [v if k else 0.0 for v, k in zip(v0s, keep)]


def alg1_weight_init(snn: SNN, T: int):
    """Alg. 1 (weight-based v(0)) as printed, one scalar per layer: ``sum_mem = W * T + b;
    mem = sum_mem % V_th; init_mem[l] = mem.mean()``, elementwise on the weights, the bias once
    per output unit: a spike on every input at every step ("more extreme", the paper says)."""
    T, out = check_T(T), []
    for node in snn.nodes:
        src = node.source
        if src is None:
            raise ValueError(f"{node.name}: no weight layer drives this node; Alg. 1 needs one")
        W = to_host(src.params["weight"]).astype(np.float64)
        b = to_host(src.params["bias"]).astype(np.float64) if "bias" in src.params else 0.0
        b = np.reshape(b, (-1,) + (1,) * (W.ndim - 1)) if np.ndim(b) else b
        v_th = host(node.v_th).astype(np.float64)
        if v_th.ndim:              # channel-wise thresholds: one per output unit of W
            v_th = v_th.reshape((-1,) + (1,) * (W.ndim - 1))
        out.append(np.float32(np.mod(W * T + b, v_th).mean()))
    return out


def record_v_T(snn: SNN, batches, T: int):
    """Run the SNN with its current v(0) on each batch: per node the (N_total, ...) v(T)."""
    per_node = [[] for _ in snn.nodes]
    for xb in batches:
        for acc, rec in zip(per_node, snn.run(xb, T, keep_v=True).layers):
            acc.append(rec["v_T"])
    if not per_node[0]:
        raise ValueError("Alg. 2 needs at least one batch of training images")
    return [np.concatenate(a) for a in per_node]


def reduce_v_T(v_T: np.ndarray, v_th, reading: str, granularity: str):
    """Map the recorded v(T) (N, ...) by ``reading``, average it to ``granularity``."""
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


def alg2_data_init(snn: SNN, batches, T: int, reading: str = READING, granularity: str = "layer"):
    """Alg. 2 (data-based v(0)): run the SNN with its v(0) on training images for T steps, and
    average each node's v(T), mapped by ``reading`` ("raw" is the printed line), over images and
    neurons per ``granularity``: a v(0) list (scalars, or arrays on the images' device)."""
    check_choice(reading, READINGS, "Alg. 2 reading")
    check_choice(granularity, GRANULARITIES, "granularity")
    batches = list(batches)
    xp, out = xp_of(batches[0]) if batches else np, []     # v(0) arrays go to the images' device
    v_Ts = record_v_T(snn, batches, T)
    for node, v_T in zip(snn.nodes, v_Ts):
        r = check_finite(reduce_v_T(v_T, host(node.v_th), reading, granularity),
                         f"Alg. 2: the v(0) of {node.name} (the mean of its recorded v(T))")
        out.append(r if np.ndim(r) == 0 else to_device(r, xp))
    return out


def compensation(snn: SNN, T: int, kind: str = "literal"):
    """Coding compensation C^l per node: V_th/(2T) (``literal``, Alg. 3) or V_th/2 (``half``)."""
    check_choice(kind, COMPENSATIONS, "compensation")
    div = 2.0 * check_T(T) if kind == "literal" else 2.0
    return [n.v_th / div for n in snn.nodes]


def alg3_ic_init(snn: SNN, batches, T: int, comp: str = "literal", reading: str = READING,
                 granularity: str = "layer", keep=None):
    """Alg. 3: set v(0) = C, run Alg. 2 on that SNN to get R, return final v(0) = R + C.
    Nodes where ``keep`` is False hold v(0) = 0 throughout (the paper's ResNet blocks)."""
    C = masked(compensation(snn, T, comp), keep)
    snn.set_v0(C)
    R = alg2_data_init(snn, batches, T, reading, granularity)
    return masked([r + c for r, c in zip(R, C)], keep)
