"""The variants compared in the paper's tables, by name: how each one sets v(0).

    snn         v(0) = 0                                          (plain conversion)
    i-snn       v(0) = Alg. 2 on the plain SNN                    (Sec. 3.3, data-based)
    c-snn       v(0) = C, the coding compensation                 (Sec. 3.4, Alg. 3 lines 4-6)
    ic-snn      v(0) = R + C, R = Alg. 2 on the SNN with v(0) = C  (Alg. 3)
    i-snn-alg1  v(0) = Alg. 1, from the weights only              (Sec. 3.3)
    ic-snn-fp   ours: Alg. 2 repeated from IC-SNN's v(0) until v(0) stops moving

Beyond the paper, its training-free family (methods.py):

    snn-calib   v(0) = V_th/2 + T x mean(ANN - SNN) per channel, layer by layer (SNN Calibration)
    cos         v(0) = V_th/2, moved by -V_th/0/+V_th per image after rho pre-run steps (COS)
    srp         v(0) = V_th/2; after tau pre-run steps neurons with v <= 0 are silenced (SRP)

and ``calibrate_variant(..., thresholds="mse")`` sets V_th by SNN Calibration's threshold
search for any of them. COS and SRP run ``prerun`` steps before the T counted ones.

``VARIANTS`` is the one list of names; the CLIs, tables and tests read it from here.

    v0 = calibrate_variant(snn, "ic-snn", T=8, batches=calib)    # sets and returns v(0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .checks import check_choice, check_T
from .init_mem import (alg1_weight_init, alg2_data_init, alg3_ic_init, compensation,
                       fixed_point_init, masked)
from .methods import (PRERUN_STEPS, THRESHOLD_SEARCHES, cos_prerun, half_threshold,
                      snn_calibration_init, srp_prerun, use_thresholds)

V0_SCOPES = ("all", "block-first")


@dataclass
class Setting:
    """What a variant's v(0) may depend on, besides the network and T."""
    batches: list | None = None        # calibration images (normalised, on the device)
    reading: str = "remainder"         # Alg. 2 reading
    granularity: str = "layer"         # v(0) per layer / channel / neuron
    comp: str = "literal"              # compensation size
    xp: object = np                    # array module of the network
    keep: list | None = None           # per node: False = v(0) stays 0 (ResNet block treatment)
    sim_kw: dict = field(default_factory=dict)   # for simulate (coding, engine, chunk, ...)
    prerun: int = PRERUN_STEPS         # pre-run steps (rho, tau) of COS and SRP


@dataclass(frozen=True)
class Variant:
    label: str                               # as in the paper's tables
    summary: str                             # one line: what v(0) is
    needs_data: bool                         # runs the SNN on calibration images
    v0: Callable                             # v0(snn, T, setting) -> list of v(0), one per node
    depends_on: tuple = ()                   # the Setting fields its v(0) depends on
    prerun: Callable | None = None           # prerun(T, setting) -> simulate.PreRun, or None


def _alg2(snn, T, s: Setting):
    snn.set_v0([0.0] * len(snn.nodes))
    return alg2_data_init(snn, s.batches, T, s.reading, s.granularity, xp=s.xp, **s.sim_kw)


def _alg3(snn, T, s: Setting):
    return alg3_ic_init(snn, s.batches, T, s.comp, s.reading, s.granularity, xp=s.xp, keep=s.keep,
                        **s.sim_kw)


def _snn_calib(snn, T, s: Setting):
    return snn_calibration_init(snn, s.batches, T, xp=s.xp, keep=s.keep, **s.sim_kw)


def _fixed_point(snn, T, s: Setting):
    v0, _ = fixed_point_init(snn, s.batches, T, s.reading, s.granularity, start=_alg3(snn, T, s),
                             xp=s.xp, keep=s.keep, **s.sim_kw)
    return v0


VARIANTS = {
    "snn": Variant("SNN", "v(0) = 0", False, lambda snn, T, s: [0.0] * len(snn.nodes)),
    "i-snn": Variant("I-SNN", "v(0) = Alg. 2 (mean v(T) of the plain SNN)", True, _alg2,
                     ("reading", "granularity")),
    "c-snn": Variant("C-SNN", "v(0) = compensation C", False,
                     lambda snn, T, s: compensation(snn, T, s.comp), ("comp",)),
    "ic-snn": Variant("IC-SNN", "v(0) = Alg. 3: R + C", True, _alg3,
                      ("reading", "granularity", "comp")),
    "i-snn-alg1": Variant("I-SNN Alg. 1", "v(0) = Alg. 1 (weights only)", False,
                          lambda snn, T, s: alg1_weight_init(snn, T)),
    "ic-snn-fp": Variant("IC-SNN fixed point (ours)", "Alg. 2 iterated from Alg. 3's v(0)", True,
                         _fixed_point, ("reading", "granularity", "comp")),
    "snn-calib": Variant("SNN Calibration (light, potential)", "v(0) = V_th/2 + T mean(ANN - SNN) "
                         "per channel, layer by layer", True, _snn_calib),
    "cos": Variant("COS (offset spikes)", "v(0) = V_th/2 -/+ V_th per image after rho pre-run steps",
                   False, lambda snn, T, s: half_threshold(snn, T), ("prerun",),
                   lambda T, s: cos_prerun(s.prerun)),
    "srp": Variant("SRP (residual potential)", "v(0) = V_th/2; silenced where v <= 0 after tau "
                   "pre-run steps", False, lambda snn, T, s: half_threshold(snn, T), ("prerun",),
                   lambda T, s: srp_prerun(s.prerun)),
}
METHOD_VARIANTS = ("snn-calib", "cos", "srp")
PAPER_VARIANTS = ("snn", "i-snn", "c-snn", "ic-snn")


def calibrate_variant(snn, variant: str, T: int, batches=None, reading: str = "remainder",
                      granularity: str = "layer", comp: str = "literal", xp=np,
                      v0_scope: str = "all", thresholds: str = "quantile",
                      prerun: int = PRERUN_STEPS, **sim_kw):
    """Set ``snn``'s v(0) for ``variant`` (calibrated for T) and return the v(0) list.

    ``batches`` (training images, normalised, on the device; a list, as it is iterated more
    than once) are needed by the data-based variants. ``v0_scope="block-first"`` is the
    paper's ResNet treatment: v(0) only on the first IF node of each residual block, the
    others keep 0 (also while Alg. 2 measures). ``sim_kw`` go to ``simulate``.

    ``thresholds="mse"`` first sets V_th by SNN Calibration's search at T (methods.py; needs
    ``batches``), ``"quantile"`` keeps (restores) those of threshold balancing. ``prerun``:
    the pre-run steps of COS and SRP, which leave ``snn.prerun`` set so that every later
    simulation of the SNN runs them (the other variants clear it).
    """
    T = check_T(T)
    spec = VARIANTS[check_choice(variant, VARIANTS, "variant")]
    check_choice(v0_scope, V0_SCOPES, "v(0) scope")
    check_choice(thresholds, THRESHOLD_SEARCHES, "threshold search")
    if (spec.needs_data or thresholds == "mse") and not batches:
        why = f"variant {variant!r}" if spec.needs_data else "the MSE threshold search"
        raise ValueError(f"{why} needs calibration batches of training images")
    if isinstance(prerun, bool) or not isinstance(prerun, (int, np.integer)) or prerun < 0:
        raise ValueError(f"pre-run steps must be an integer >= 0, got {prerun!r}")
    snn.prerun = None                   # calibration runs plain; a pre-run is set at the end
    use_thresholds(snn, thresholds, batches, T)
    keep = snn.block_first() if v0_scope == "block-first" else None
    setting = Setting(batches, reading, granularity, comp, xp, keep, sim_kw, int(prerun))
    v0 = masked(spec.v0(snn, T, setting), keep)
    snn.set_v0(v0)
    snn.prerun = spec.prerun(T, setting) if spec.prerun else None
    return v0


def setting_key(variant: str, **opts) -> tuple:
    """What a variant's v(0) depends on: two rows with the same key give the same numbers
    (e.g. "I-SNN remainder" is the I-SNN row when remainder is the default), so run once."""
    return (variant,) + tuple(opts.get(k) for k in VARIANTS[variant].depends_on)
