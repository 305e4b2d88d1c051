"""The training-free methods beyond the paper, by name, beside the paper's variants.

Each attacks a term of Eq. 11 (neurons.py): r V_th = (1/T) sum_t I(t) + (v(0) - v(T)) / T.

    snn-calib   v(0) = V_th/2 + T x mean(ANN - SNN) per channel, layer by layer (calibration.py)
    cos         v(0) = V_th/2, moved by -V_th/0/+V_th per image after rho pre-run steps (prerun.py)
    srp         v(0) = V_th/2; after tau pre-run steps neurons with v <= 0 are silenced (prerun.py)
    ic-snn-fp   ours: Alg. 2 repeated from IC-SNN's v(0) until v(0) stops moving (fixed_point.py)

and ``Thresholds(snn).use("mse", T)`` (thresholds.py) sets V_th by SNN Calibration's search
for any variant. ``TABLE`` holds every variant by name, the paper's and these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..init_mem import compensation
from ..variants import VARIANTS, Variant, alg3
from .calibration import snn_calibration_init
from .fixed_point import fixed_point_init
from .prerun import PRERUN_STEPS, cos_prerun, srp_prerun


@dataclass(frozen=True)
class Method(Variant):
    """A variant beyond the paper; ``prerun(steps)`` gives the PreRun it runs first, if any."""
    prerun: Callable | None = None


def half_threshold(snn, T: int, setting=None):
    """v(0) = V_th/2 per node: where COS, SRP (and QCFS, C-SNN ``half``) start."""
    return compensation(snn, T, "half")


def _snn_calib(snn, T, s):
    return snn_calibration_init(snn, s.batches, T, xp=s.xp, keep=s.keep, sim=s.sim, **s.sim_kw)


def _fixed_point(snn, T, s):
    return fixed_point_init(snn, s.batches, T, s.reading, s.granularity, alg3(snn, T, s),
                            xp=s.xp, keep=s.keep, sim=s.sim, **s.sim_kw)[0]


METHODS = {
    "ic-snn-fp": Method("IC-SNN fixed point (ours)", "Alg. 2 iterated from Alg. 3's v(0)", True,
                        _fixed_point, ("reading", "granularity", "comp")),
    "snn-calib": Method("SNN Calibration (light, potential)", "v(0) = V_th/2 + T mean(ANN - SNN) "
                        "per channel, layer by layer", True, _snn_calib),
    "cos": Method("COS (offset spikes)", "v(0) = V_th/2 -/+ V_th per image after rho pre-run steps",
                  False, half_threshold, ("prerun",), cos_prerun),
    "srp": Method("SRP (residual potential)", "v(0) = V_th/2; silenced where v <= 0 after tau "
                  "pre-run steps", False, half_threshold, ("prerun",), srp_prerun),
}
TABLE = {**VARIANTS, **METHODS}
METHOD_VARIANTS = ("snn-calib", "cos", "srp")   # the training-free family of the papers
