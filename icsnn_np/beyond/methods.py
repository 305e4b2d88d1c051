"""The training-free methods beyond the paper, by name, beside the paper's variants.

Each attacks a term of Eq. 11 (neurons.py): r V_th = (1/T) sum_t I(t) + (v(0) - v(T)) / T.

    snn-calib      a current every step: theta/(2T) + mu(ANN - SNN) per channel, layer by
                   layer; v(0) = 0 (SNN Calibration, light, as published: calibration.py)
    snn-calib-adv  theta/(2T) every step; v(0) per neuron = T mean(ANN - SNN), layer by layer
                   (SNN Calibration, advanced on CIFAR)
    snn-calib-v0   ablation, ours: the light correction put into v(0) once, per channel
    cos            v(0) = V_th/2, moved by -V_th/0/+V_th per image after rho pre-run steps
                   of the whole network (our reading; prerun.py)
    cos-layer      the same, layer by layer as COS's code: L rho + T steps (prerun.py)
    srp            v(0) = V_th/2; after tau pre-run steps neurons with v <= 0 are silenced
    ic-snn-fp      ours: Alg. 2 repeated from IC-SNN's v(0) until v(0) stops moving

and ``Thresholds(snn).use("mse", T)`` (thresholds.py) sets V_th by SNN Calibration's search
for any variant. ``TABLE`` holds every variant by name, the paper's and these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..init_mem import compensation
from ..variants import VARIANTS, Variant, alg3
from .calibration import snn_calibration, snn_calibration_advanced, snn_calibration_v0
from .fixed_point import fixed_point_init
from .prerun import cos_prerun, simulate_cos_layerwise, simulate_prerun, srp_prerun


@dataclass(frozen=True)
class Method(Variant):
    """A variant beyond the paper. ``build(snn, T, setting)``: the SNN to simulate, when the
    method adds to it (SNN Calibration's currents); ``run(rho, L)``: (a function
    ``f(snn, x, T, sim, **kw)`` that simulates with the method's pre-run, its uncounted steps)."""
    build: Callable | None = None
    run: Callable | None = None


def half_threshold(snn, T: int, setting=None):
    """v(0) = V_th/2 per node: where COS, SRP (and QCFS, C-SNN ``half``) start."""
    return compensation(snn, T, "half")


def zeros(snn, T, setting=None):
    return [0.0] * len(snn.nodes)


def _fixed_point(snn, T, s):
    return fixed_point_init(snn, s.batches, T, s.reading, s.granularity, alg3(snn, T, s),
                            xp=s.xp, keep=s.keep, sim=s.sim, **s.sim_kw)[0]


def _prerun(make):
    """``Method.run`` for a whole-network PreRun (COS, SRP): rho + T steps."""
    def run(rho, L):
        pre = make(rho)
        return (lambda snn, x, T, sim, **kw: simulate_prerun(snn, x, T, pre, sim, **kw)), pre.steps
    return run


def _cos_layer(rho, L):
    return (lambda snn, x, T, sim, **kw: simulate_cos_layerwise(snn, x, T, rho, sim, **kw)), L * rho


def _calib(fn):
    return lambda snn, T, s: fn(snn, s.batches, T, xp=s.xp, keep=s.keep, sim=s.sim, **s.sim_kw)


METHODS = {
    "ic-snn-fp": Method("IC-SNN fixed point (ours)", "Alg. 2 iterated from Alg. 3's v(0)", True,
                        _fixed_point, ("reading", "granularity", "comp")),
    "snn-calib": Method("SNN Calibration (light)", "current theta/(2T) + mean(ANN - SNN) per "
                        "channel every step, layer by layer; v(0) = 0", True, zeros,
                        build=_calib(snn_calibration)),
    "snn-calib-adv": Method("SNN Calibration (advanced)", "current theta/(2T) every step; v(0) "
                            "per neuron = T mean(ANN - SNN), layer by layer", True, zeros,
                            build=_calib(snn_calibration_advanced)),
    "snn-calib-v0": Method("SNN Calibration, v(0) form (ablation, ours)", "v(0) = V_th/2 + "
                           "T mean(ANN - SNN) per channel, layer by layer", True,
                           lambda snn, T, s: _calib(snn_calibration_v0)(snn, T, s)),
    "cos": Method("COS, whole network (ours)", "v(0) = V_th/2 -/+ V_th per image after rho "
                  "pre-run steps of the whole network", False, half_threshold, ("prerun",),
                  run=_prerun(cos_prerun)),
    "cos-layer": Method("COS (layer by layer, as published)", "v(0) = V_th/2 -/+ V_th per image, "
                        "each layer after rho steps on the calibrated layers below", False,
                        half_threshold, ("prerun",), run=_cos_layer),
    "srp": Method("SRP (residual potential)", "v(0) = V_th/2; silenced where v <= 0 after tau "
                  "pre-run steps", False, half_threshold, ("prerun",), run=_prerun(srp_prerun)),
}
TABLE = {**VARIANTS, **METHODS}
METHOD_VARIANTS = ("snn-calib", "snn-calib-adv", "cos", "cos-layer", "srp")   # the papers' family
