"""Thresholds beyond the paper's layer-wise p-quantile (convert.layer_threshold):

    channel_threshold   ours: a p-quantile per channel, of each channel's positive outputs
                        (SNN-Toolbox's rule, Rueckauer et al. 2017)
    mse_threshold(s)    SNN Calibration's search: per layer the V_th whose T-step output is
                        closest to the ANN's activation

    balance_thresholds(snn, model, calib, p, rule=channel_threshold)    # per channel

[Calib] Y. Li, S. Deng, X. Dong, R. Gong, S. Gu, "A Free Lunch From ANN: Towards Efficient,
        Accurate Spiking Neural Networks Calibration", ICML 2021; github.com/yhhhli/
        SNN_Calibration (``find_threshold_mse``, ``clip_floor``), commit 4aece7c.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_choice, check_T, check_threshold
from ..convert import MAX_QUANTILE_SAMPLES, SNN, layer_threshold, relu_outputs

MSE_CANDIDATES = 100      # V_th = max (1 - 0.01 i), i = 0 .. 99
MSE_MAX_VALUES = 1 << 19  # nonzero activations per layer the search scores (a seeded sample beyond)
THRESHOLD_SEARCHES = ("quantile", "mse")


def positive_quantiles(values: np.ndarray, p: float, seed: int = 0):
    """Per row of ``values`` (C, M) (host) the p-quantile of its entries > 0, as np.quantile
    would give it over them alone (NaN for a row with none); beyond MAX_QUANTILE_SAMPLES
    values in all, on a seeded uniform sample of the columns."""
    if values.shape[1] > MAX_QUANTILE_SAMPLES // max(1, values.shape[0]):
        k = MAX_QUANTILE_SAMPLES // values.shape[0]
        values = values[:, np.random.default_rng(seed).choice(values.shape[1], k, replace=False)]
    s = np.sort(values, axis=1)                     # (C, M): each row's positives at its end
    k = (s > 0).sum(axis=1)
    h = (s.shape[1] - k) + p * np.maximum(k - 1, 0)  # np.quantile's linear position among them
    lo = np.minimum(np.floor(h), s.shape[1] - 1).astype(np.int64)
    hi = np.minimum(lo + 1, s.shape[1] - 1)
    rows = np.arange(len(s))
    q = s[rows, lo] + (h - lo) * (s[rows, hi] - s[rows, lo])
    return np.where(k > 0, q, np.nan)


def channel_threshold(a, p: float, name: str):
    """Ours, not the paper's: V_th per channel (C, 1, 1) from one layer's ReLU outputs ``a``
    (N, C, ...): the p-quantile of each channel's *positive* outputs, since many channels are
    0 on over 99.9 % of the images; a channel never positive on the calibration images takes
    the layer's threshold (``layer_threshold``, whose zero-quantile check applies first).
    Non-decreasing in p. A ``rule`` for ``convert.balance_thresholds``."""
    layer = layer_threshold(a, p, name)
    per_c = positive_quantiles(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1), p)
    th = np.where(np.isnan(per_c), layer, per_c)                               # (C,)
    return th.astype(np.float32).reshape((-1,) + (1,) * (a.ndim - 2))


def need_ann(snn: SNN, what: str):
    """The ANN the SNN was converted from (``convert`` records it)."""
    if getattr(snn, "ann", None) is None:
        raise ValueError(f"{what} compares the SNN with its ANN: convert it with "
                         f"icsnn_np.convert.convert(model), which records the ANN")
    return snn.ann


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


def mse_thresholds(snn: SNN, batches, T: int, base=None):
    """Every IF node's V_th by ``mse_threshold`` at T on the ANN's activations over the
    calibration ``batches`` (layer-wise), ``base`` (the p-quantile thresholds; default the
    SNN's current ones) competing too. Returns the list; the SNN is not changed.

    Reading: one V_th per node (the paper's ResNet block sharing is not applied here).
    """
    if any(np.ndim(n.v_th) for n in snn.nodes):
        raise ValueError("the MSE threshold search is layer-wise: balance with layer-wise "
                         "thresholds (not --channelwise)")
    if not batches:
        raise ValueError("the MSE threshold search needs calibration batches of training images")
    acts = relu_outputs(need_ann(snn, "the MSE threshold search"), batches)
    base = [n.v_th for n in snn.nodes] if base is None else base
    return [check_threshold(np.float32(mse_threshold(a, T, extra=(float(q),))[0]), node.name)
            for node, a, q in zip(snn.nodes, acts, base)]


class Thresholds:
    """The thresholds an SNN runs with at each T: ``quantile`` (those it had from balancing
    when this was made) or ``mse`` (``mse_thresholds`` at T, computed once per T)."""

    def __init__(self, snn: SNN, batches=None):
        self.snn, self.batches = snn, batches
        self.quantile = [n.v_th for n in snn.nodes]
        self.cache: dict = {}

    def use(self, kind: str, T: int):
        """Set the SNN's V_th for ``kind`` at T; returns them."""
        check_choice(kind, THRESHOLD_SEARCHES, "threshold search")
        ths = self.quantile
        if kind == "mse":
            if check_T(T) not in self.cache:
                self.cache[T] = mse_thresholds(self.snn, self.batches, T, base=self.quantile)
            ths = self.cache[T]
        for node, th in zip(self.snn.nodes, ths):
            node.v_th = th
        return list(ths)
