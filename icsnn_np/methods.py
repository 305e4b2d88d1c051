"""Beyond the paper: the training-free methods of IC-SNN's family, on the same footing.

Every one of them attacks a term of Eq. 11 (neurons.py), for each neuron of layer l:

    r V_th = (1/T) sum_t I(t)  +  (v(0) - v(T)) / T

* **v(0)**, once per layer or channel, from calibration images: IC-SNN (init_mem.py), QCFS /
  OPI's V_th/2 (C-SNN ``half``), and ``snn_calibration_init`` (SNN Calibration's potential
  correction: v(0) += T x the mean output error the ANN reveals, layer after layer);
* **v(0), per sample**, from a short *pre-run* of the image itself: ``cos_rule`` (offset
  spikes: v(0) moves by -V_th or +V_th where the pre-run's v(rho) shows one spike too many or
  too few);
* **the spikes themselves**, per sample: ``srp_rule`` (residual membrane potential: a neuron
  whose v(tau) is at or below zero may not fire during the T counted steps);
* **V_th**: ``mse_threshold`` (SNN Calibration's threshold search: the V_th whose clipped,
  floored T-step output is closest to the ANN's activation, instead of a p-quantile).

The pre-run methods cost rho (tau) more steps per image: ``simulate(..., prerun=PreRun(...))``
runs them, and every table reports rho and rho + T beside T. Where the papers or their code
leave a choice, the reading taken is named in the function's docstring ("reading: ...").
They are selected by name through ``variants.VARIANTS`` ("snn-calib", "cos", "srp") and, for
the thresholds, ``calibrate_variant(..., thresholds="mse")``.

References (equation numbers of the papers where they could be checked; the public code is
named where it decides a detail):
  [Calib] Y. Li, S. Deng, X. Dong, R. Gong, S. Gu, "A Free Lunch From ANN: Towards Efficient,
          Accurate Spiking Neural Networks Calibration", ICML 2021; github.com/yhhhli/
          SNN_Calibration (``emp_bias_corr``, ``find_threshold_mse``).
  [COS]   Z. Hao, J. Ding, T. Bu, T. Huang, Z. Yu, "Bridging the Gap between ANNs and SNNs by
          Calibrating Offset Spikes", ICLR 2023; github.com/hzc1208/ANN2SNN_COS (``MPLayer``).
  [SRP]   Z. Hao, T. Bu, J. Ding, T. Huang, Z. Yu, "Reducing ANN-SNN Conversion Error through
          Residual Membrane Potential", AAAI 2023; github.com/hzc1208/ANN2SNN_SRP (``MPLayer``).
  [QCFS]  T. Bu, W. Fang, J. Ding, P. Dai, Z. Yu, T. Huang, "Optimal ANN-SNN Conversion for
          High-accuracy and Ultra-low-latency Spiking Neural Networks", ICLR 2022 (v(0) = V_th/2).
"""
from __future__ import annotations

import numpy as np

from .backend import to_device, xp_of
from .checks import check_T, check_threshold
from .convert import SNN, relu_outputs
from .init_mem import compensation, host, masked
from .layers import ReLU
from .module import Module, rebuild
from .simulate import PreRun, simulate

PRERUN_STEPS = 4          # rho (COS) and tau (SRP): SRP's published CIFAR setting (tau = 4)
MSE_CANDIDATES = 100      # V_th = max (1 - 0.01 i), i = 0 .. 99
MSE_MAX_VALUES = 1 << 19  # nonzero activations per layer the search scores (a seeded sample beyond)
THRESHOLD_SEARCHES = ("quantile", "mse")


def _need_ann(snn: SNN, what: str):
    if getattr(snn, "ann", None) is None:
        raise ValueError(f"{what} compares the SNN with its ANN: convert it with "
                         f"icsnn_np.convert.convert(model), which records the ANN")
    return snn.ann


# --------------------------------------------------------------------------- SNN Calibration
def layer_errors(snn: SNN, batches, T: int, ann_outputs=None, **sim_kw):
    """Per IF node, the mean output error per channel, mean over images and positions of
    ANN activation - SNN output (spikes x V_th / T): [Calib]'s e^(l) reduced per channel.

    ``ann_outputs`` (optional): ``relu_outputs(snn.ann, batches)``, to save recomputing them.
    Returns host float64 arrays of shape (C, 1, 1) (conv layers) or (F,) (linear ones).
    """
    T = check_T(T)
    ann = relu_outputs(_need_ann(snn, "layer_errors"), batches) if ann_outputs is None \
        else ann_outputs
    decoded = [[] for _ in snn.nodes]
    for xb in batches:
        res = simulate(snn, xb, T, record=True, **sim_kw)
        for acc, rec in zip(decoded, res.layers):
            acc.append(rec["decoded"])
    out = []
    for a, d in zip(ann, decoded):
        e = a.astype(np.float64) - np.concatenate(d).astype(np.float64)
        out.append(e.mean(axis=(0, 2, 3)).reshape(-1, 1, 1) if e.ndim == 4 else e.mean(axis=0))
    return out


def snn_calibration_init(snn: SNN, batches, T: int, start: str = "half", xp=np, keep=None,
                         **sim_kw):
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
    ann = relu_outputs(_need_ann(snn, "SNN Calibration"), batches)
    v0 = masked(compensation(snn, T, "half") if start == "half" else [0.0] * len(snn.nodes), keep)
    for i, node in enumerate(snn.nodes):
        if keep is not None and not keep[i]:
            continue
        snn.set_v0(v0)
        err = layer_errors(snn, batches, T, ann_outputs=ann, **sim_kw)[i]
        if not np.all(np.isfinite(err)):
            raise ValueError(f"SNN Calibration: the output error of {node.name} is not finite")
        v0[i] = to_device(host(v0[i]) + T * err, xp)      # float64: the node casts it
    snn.set_v0(v0)
    return v0


# --------------------------------------------------------------------------- MSE thresholds
def clip_floor(a, T: int, v_th):
    """The T-step IF output an activation ``a`` maps to, with v(0) = 0 and a constant input:
    floor(clip(a T / V_th, 0, T)) V_th / T ([Calib]'s ``clip_floor``; QCFS without shift)."""
    return np.floor(np.clip(a * T / v_th, 0.0, T)) * v_th / T


def quantisation_error(a, T: int, v_th) -> float:
    """Mean squared difference between activations ``a`` and their clip-floor at V_th, T."""
    a = np.asarray(a, dtype=np.float64)
    return float(np.mean((a - clip_floor(a, T, float(v_th))) ** 2))


def mse_threshold(acts, T: int, extra=(), n: int = MSE_CANDIDATES, max_values=MSE_MAX_VALUES,
                  seed: int = 0):
    """[Calib]'s threshold search for one layer: the V_th among ``n`` candidates
    max(a) (1 - 0.01 i), i = 0 .. n-1, plus ``extra`` ones, with the smallest
    ``quantisation_error`` at T. Returns (V_th, candidates, errors) (host floats).

    Readings: the candidates step by 1% of the layer's maximum over all calibration images
    (the code takes 95 steps on each batch's maximum and averages batches with momentum
    0.9); ``extra`` lets the p-quantile threshold compete too (``mse_thresholds`` passes it,
    so the search is never worse than threshold balancing by its own measure); ties go to
    the first candidate. Exact zeros (most ReLU outputs) cost nothing at any V_th, so only the
    other values are scored, and beyond ``max_values`` of them a seeded uniform sample of that
    many (every candidate on the same sample); errors stay means over all activations.
    """
    T = check_T(T)
    a = np.asarray(acts, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError("the MSE threshold search needs finite activations")
    top, size = float(a.max()), a.size
    a = a[a != 0]
    if a.size > max_values:
        a = a[np.random.default_rng(seed).choice(a.size, max_values, replace=False)]
    cands = [top * (1.0 - 0.01 * i) for i in range(n)] if top > 0 else [1.0]
    cands += [float(e) for e in extra if float(e) > 0]
    share = a.size / size                     # the scored values' share of all activations
    errors = [share * quantisation_error(a, T, c) if a.size else 0.0 for c in cands]
    best = int(np.argmin(errors))
    return cands[best], cands, errors


def mse_thresholds(snn: SNN, batches, T: int):
    """Set every IF node's V_th by ``mse_threshold`` at T on the ANN's activations over the
    calibration ``batches`` (layer-wise), the p-quantile thresholds it had competing too.

    Readings: one V_th per node (the paper's ResNet block sharing is not applied here); the
    thresholds from balancing are kept on the SNN (``snn.quantile_v_th``) so that
    ``use_thresholds(..., "quantile")`` restores them. Returns the list of V_th.
    """
    if any(np.ndim(n.v_th) for n in snn.nodes):
        raise ValueError("the MSE threshold search is layer-wise: balance with layer-wise "
                         "thresholds (not --channelwise)")
    if not batches:
        raise ValueError("the MSE threshold search needs calibration batches of training images")
    base = getattr(snn, "quantile_v_th", None)
    if base is None:
        base = snn.quantile_v_th = [n.v_th for n in snn.nodes]
    acts = relu_outputs(_need_ann(snn, "the MSE threshold search"), batches)
    ths = []
    for node, a, q in zip(snn.nodes, acts, base):
        th, _, _ = mse_threshold(a, T, extra=(float(q),))
        node.v_th = check_threshold(np.float32(th), node.name)
        ths.append(node.v_th)
    return ths


def use_thresholds(snn: SNN, kind: str, batches=None, T: int | None = None):
    """Thresholds for the run at T: ``quantile`` (those of balancing, restored if an MSE
    search replaced them) or ``mse`` (``mse_thresholds`` at T, computed once per T and set of
    batches and remembered on the SNN)."""
    if kind not in THRESHOLD_SEARCHES:
        raise ValueError(f"unknown threshold search {kind!r}: expected one of {THRESHOLD_SEARCHES}")
    if kind == "quantile":
        base = getattr(snn, "quantile_v_th", None)
        if base is not None:
            for node, th in zip(snn.nodes, base):
                node.v_th = th
        return [n.v_th for n in snn.nodes]
    cache = snn.__dict__.setdefault("mse_cache", {})
    key = (check_T(T), id(batches[0]) if batches else None, len(batches or ()))
    if key not in cache:
        cache[key] = mse_thresholds(snn, batches, T)
    for node, th in zip(snn.nodes, cache[key]):
        node.v_th = th
    return list(cache[key])


# --------------------------------------------------------------------------- reference
class Quantiser(Module):
    """The T-level activation of an IF neuron with no unevenness error (QCFS's clip-floor-shift):
    (V_th / T) clip(floor(a T / V_th + shift), 0, T). shift = 1/2: v(0) = V_th/2; 0: v(0) = 0."""

    def __init__(self, v_th, T: int, shift: float = 0.5):
        super().__init__()
        self.v_th, self.T, self.shift = v_th, check_T(T), float(shift)

    def forward(self, x):
        xp = xp_of(x)
        th = xp.asarray(self.v_th, dtype=x.dtype)
        return xp.clip(xp.floor(x * (self.T / th) + self.shift), 0, self.T) * (th / self.T)


def quantised_ann(snn: SNN, T: int, shift: float = 0.5):
    """The SNN's ANN with every ReLU replaced by a ``Quantiser`` at that node's V_th: what the
    SNN would compute if every neuron received its input evenly (each step's input equal to
    the mean) and started at v(0) = shift V_th. A reference for the comparison: its loss is
    the quantisation error of T levels at these thresholds, which layer-wide v(0) methods do
    not remove (per-channel or per-image v(0) shift the levels and can beat it; V_th choice,
    or QCFS training of the ANN, moves it). Shares the ANN's weights.
    """
    nodes = {n.name: n for n in snn.nodes}
    ann = _need_ann(snn, "the quantised ANN")
    return rebuild(ann, lambda m, path: Quantiser(nodes[path].v_th, T, shift)
                   if isinstance(m, ReLU) else m)


# --------------------------------------------------------------------------- COS and SRP
def cos_rule(node):
    """[COS]'s offset-spike calibration of one IF node, from its state after rho pre-run steps.

    Started at v(0) = V_th/2 (as QCFS), a neuron whose spike count is the ANN's rounded
    output ends in [0, V_th]; by Eq. 11 one spike too many leaves v(rho) < 0 and one too few
    v(rho) > V_th ([COS], offset spike and its estimate by the residual potential). Shifting
    v(0) by -V_th (+V_th) then removes (adds) one spike ([COS], the optimal shifting
    distance theta, Fig. 2). Per sample and neuron:

        v_start = v(0) - V_th   if v(rho) < 0 and the neuron fired in the pre-run
                  v(0) + V_th   if v(rho) > V_th
                  v(0)          otherwise

    Readings: the shift is exactly V_th (the paper's distance; its code widens it to
    max(V_th, the smallest margin of a pre-run spike over V_th) so that a current above V_th
    per step still loses its spike); "> V_th" for too few spikes because these neurons fire
    on v > V_th (Eq. 6; the code's spikingjelly neurons fire on >=); one pre-run (the
    "iterative property" would repeat it).
    """
    xp = xp_of(node.v)
    th = node.v_th_dev
    v0 = xp.asarray(node.v0, dtype=node.v.dtype)
    fired = node.spike_count > 0
    down = (node.v < 0) & fired
    up = node.v > th
    shift = up.astype(node.v.dtype) - down.astype(node.v.dtype)
    return v0 + shift * th, None


def srp_rule(node):
    """[SRP]'s residual-membrane-potential mask of one IF node, after tau pre-run steps.

    [SRP] shows that the largest unevenness error is a neuron that fires although its ANN
    output is zero, and that started at v(0) = V_th/2 such a neuron is told by its residual
    potential: v(tau) <= 0. Those neurons may not fire during the T counted steps (per sample
    and neuron); every neuron restarts from v(0).

    Readings: silenced where v(tau) <= 0 (the paper's condition; the code keeps a margin,
    v > 0.001 V_th); a silenced neuron neither fires nor resets, so its v integrates on and
    Eq. 11 stays exact with r = 0 (the code lets it reset and drops its output: the same
    spikes out).
    """
    return None, node.v > 0


def cos_prerun(steps: int = PRERUN_STEPS) -> PreRun:
    """COS: ``steps`` (rho) pre-run steps, then ``cos_rule``; the run costs rho + T steps.

    Reading: the whole network pre-runs at once (every layer from its v(0), as SRP's code
    does), and every layer is calibrated from that one pre-run. COS's code instead
    calibrates layer after layer, each on the already calibrated spike train of the layer
    below (it processes a layer's whole time sequence before the next); run causally, that
    needs L rho + T steps for L layers, so it is not what "rho + T" counts.
    """
    return PreRun(int(steps), cos_rule, "cos")


def srp_prerun(steps: int = PRERUN_STEPS) -> PreRun:
    """SRP: ``steps`` (tau) pre-run steps, then ``srp_rule``; the run costs tau + T steps."""
    return PreRun(int(steps), srp_rule, "srp")


def half_threshold(snn: SNN, T: int):
    """v(0) = V_th/2 per node: where COS, SRP (and QCFS, C-SNN ``half``) start."""
    return compensation(snn, T, "half")
