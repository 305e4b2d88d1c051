"""The paper's contribution: the initial membrane potential v(0) (Alg. 1, 2, 3) and variants.

By Eq. 11, for every neuron of layer l after T steps

    r^l V_th^l = W^l r^{l-1} V_th^{l-1} + b^l + (v^l(0) - v^l(T)) / T

so the decoded output differs from the ANN's affine map by (v(0) - v(T))/T. Choosing
v(0) close to the v(T) the network will end with cancels that error (Sec. 3.3); coding
compensation adds the expected coding loss back (Sec. 3.4). The variants:

    snn     v(0) = 0
    i-snn   v(0) = Alg. 2 on the plain SNN                       (data-based, Sec. 3.3)
    c-snn   v(0) = C,  C = compensation (Alg. 3 lines 4-6)
    ic-snn  v(0) = R + C, R = Alg. 2 on the SNN with v(0) = C     (Alg. 3)

Readings (see DESIGN.md, "Ambiguities" 1 and 2):
    Alg. 2 reading   raw: mean of v(T) (the paper's literal ``l.mem.mean()``)
                     remainder: mean of v(T) mod V_th, in [0, V_th) (the text's "remainder")
                     clip: mean of clip(v(T), 0, V_th)
    granularity      layer (the paper: one scalar per layer), channel, neuron
    compensation     literal: V_th/(2T) (Alg. 3 as printed)   half: V_th/2 (by Eq. 11 a shift
                     delta of v(0) moves the output by delta/T, so V_th/2 cancels the expected
                     coding error V_th/(2T); QCFS, Bu et al. 2022, SpikingJelly use this)

Beyond the paper (named as ours): ``fixed_point_init`` repeats Alg. 2 with the v(0) it found
until v(0) ~ mean v(T), which is what Eq. 11 asks for.
"""
from __future__ import annotations

import numpy as np

from .backend import to_device, to_host
from .convert import SNN
from .simulate import DEFAULT_CHUNK, check_T, simulate

READINGS = ("raw", "remainder", "clip")
GRANULARITIES = ("layer", "channel", "neuron")
COMPENSATIONS = ("literal", "half")
VARIANTS = ("snn", "i-snn", "c-snn", "ic-snn")


def _host(a) -> np.ndarray:
    """A scalar or a (device) array as a host array."""
    return to_host(a) if hasattr(a, "shape") else np.asarray(a)


def _check(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


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
        v_th = _host(node.v_th).astype(np.float64)
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


def record_v_T(snn: SNN, batches, T: int, coding="direct", chunk=DEFAULT_CHUNK, **kw):
    """Run the SNN with its current v(0) on each batch; return per node the (N_total, ...) v(T)."""
    per_node = [[] for _ in snn.nodes]
    for xb in batches:
        res = simulate(snn, xb, T, coding=coding, chunk=chunk, keep_v=True, **kw)
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
    _check(reading, READINGS, "Alg. 2 reading")
    _check(granularity, GRANULARITIES, "granularity")
    v_Ts = record_v_T(snn, batches, check_T(T), **sim_kw)
    out = []
    for node, v_T in zip(snn.nodes, v_Ts):
        r = _reduce(v_T, _host(node.v_th), reading, granularity)
        out.append(r if np.ndim(r) == 0 else to_device(r, xp))
    return out


# --------------------------------------------------------------------------- Alg. 3
def compensation(snn: SNN, T: int, kind: str = "literal"):
    """Coding compensation C^l per node: V_th/(2T) (``literal``, Alg. 3) or V_th/2 (``half``)."""
    _check(kind, COMPENSATIONS, "compensation")
    T = check_T(T)
    div = 2.0 * T if kind == "literal" else 2.0
    return [n.v_th / div for n in snn.nodes]


def alg3_ic_init(snn: SNN, batches, T: int, comp: str = "literal", reading: str = "remainder",
                 granularity: str = "layer", xp=np, **sim_kw):
    """Alg. 3: set v(0) = C, run Alg. 2 on that SNN to get R, return final v(0) = R + C."""
    C = compensation(snn, T, comp)
    snn.set_v0(C)
    R = alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw)
    return [r + c for r, c in zip(R, C)]


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
        new = alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw)
        if keep is not None:
            new = [v if k else 0.0 for v, k in zip(new, keep)]
        delta = max(float(np.max(np.abs(_host(a) - _host(b)))) / float(np.max(_host(nd.v_th)))
                    for a, b, nd in zip(new, v0, snn.nodes))
        v0 = new
        if delta < tol:
            break
    return v0, it


# --------------------------------------------------------------------------- variants
V0_SCOPES = ("all", "block-first")


def _scoped(snn: SNN, v0s, scope: str):
    """``v0s`` with v(0) = 0 where ``scope`` says a node gets none (see SNN.block_first)."""
    if scope == "all":
        return list(v0s)
    return [v if keep else 0.0 for v, keep in zip(v0s, snn.block_first())]


def calibrate_variant(snn: SNN, variant: str, T: int, batches=None, reading: str = "remainder",
                      granularity: str = "layer", comp: str = "literal", xp=np,
                      v0_scope: str = "all", **sim_kw):
    """Set ``snn``'s v(0) for ``variant`` (calibrated for T) and return the v(0) list.

    ``batches`` (training images, normalised, on the device) are needed by i-snn and ic-snn;
    pass a list (it is iterated more than once by ic-snn's two steps).
    Also accepts ``ic-snn-fp`` (ours): the fixed point of Alg. 2 started from Alg. 3's v(0).
    ``v0_scope="block-first"``: the paper's ResNet treatment, v(0) only on the first IF node
    of each residual block (the rest keep 0, also while Alg. 2 measures); "all" (default)
    gives every node its v(0).
    """
    T = check_T(T)
    _check(variant, VARIANTS + ("ic-snn-fp", "i-snn-alg1"), "variant")
    _check(v0_scope, V0_SCOPES, "v(0) scope")
    if v0_scope != "all":
        return _calibrate_scoped(snn, variant, T, batches, reading, granularity, comp, xp,
                                 v0_scope, **sim_kw)
    if variant != "snn" and variant != "c-snn" and variant != "i-snn-alg1" and batches is None:
        raise ValueError(f"variant {variant!r} needs calibration batches of training images")
    zeros = [0.0] * len(snn.nodes)
    if variant == "snn":
        v0 = zeros
    elif variant == "i-snn":
        snn.set_v0(zeros)
        v0 = alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw)
    elif variant == "i-snn-alg1":
        v0 = alg1_weight_init(snn, T)
    elif variant == "c-snn":
        v0 = compensation(snn, T, comp)
    elif variant == "ic-snn":
        v0 = alg3_ic_init(snn, batches, T, comp, reading, granularity, xp=xp, **sim_kw)
    else:  # ic-snn-fp
        start = alg3_ic_init(snn, batches, T, comp, reading, granularity, xp=xp, **sim_kw)
        v0, _ = fixed_point_init(snn, batches, T, reading, granularity, start=start, xp=xp, **sim_kw)
    snn.set_v0(v0)
    return v0


def _calibrate_scoped(snn, variant, T, batches, reading, granularity, comp, xp, scope, **sim_kw):
    """calibrate_variant with v(0) = 0 outside ``scope``, in every run Alg. 2/3 make."""
    zeros = [0.0] * len(snn.nodes)
    if variant in ("snn", "c-snn", "i-snn-alg1"):
        v0 = calibrate_variant(snn, variant, T, batches, reading, granularity, comp, xp=xp, **sim_kw)
    elif variant == "i-snn":
        snn.set_v0(zeros)
        v0 = alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw)
    else:                                   # ic-snn (and its fixed point): Alg. 3, scoped
        C = _scoped(snn, compensation(snn, T, comp), scope)
        snn.set_v0(C)
        R = alg2_data_init(snn, batches, T, reading, granularity, xp=xp, **sim_kw)
        v0 = _scoped(snn, [r + c for r, c in zip(R, C)], scope)
        if variant == "ic-snn-fp":
            v0, _ = fixed_point_init(snn, batches, T, reading, granularity, start=v0, xp=xp,
                                     keep=snn.block_first(), **sim_kw)
    v0 = _scoped(snn, v0, scope)
    snn.set_v0(v0)
    return v0
