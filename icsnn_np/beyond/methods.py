"""Every conversion method by name: the paper's variants and the training-free methods
beyond the paper, each with what it needs (calibration images, passes, its own recipe).

Each attacks a term of Eq. 11 (neurons.py): r V_th = (1/T) sum_t I(t) + (v(0) - v(T)) / T.

    snn, i-snn, c-snn, ic-snn, i-snn-alg1   the paper's (variants.py)
    ic-snn-fp      ours: Alg. 2 repeated from IC-SNN's v(0) until v(0) stops moving
    snn-calib      a current every step: theta/(2T) + mu(ANN - SNN) per channel, layer by
                   layer; v(0) = 0 (SNN Calibration, light, as published: calibration.py)
    snn-calib-adv  theta/(2T) every step; v(0) per neuron = T mean(ANN - SNN), layer by layer
                   (SNN Calibration, advanced on CIFAR)
    snn-calib-v0   ablation, ours: the light correction put into v(0) once, per channel
    cos            v(0) = V_th/2, moved by -V_th/0/+V_th per image after rho pre-run steps
                   of the whole network (our reading; prerun.py)
    cos-layer      the same, layer by layer as COS's code: L rho + T steps (prerun.py)
    srp            v(0) = V_th/2; after tau pre-run steps neurons with v <= 0 are silenced

    setup = METHODS["cos"].setup(snn, T, calib, Options(prerun=4))   # -> a Setup
    res = setup.run(x, T, count=True)

``Thresholds(snn).use("mse", T)`` (thresholds.py) sets V_th by SNN Calibration's search for
any of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..checks import check_T
from ..convert import SNN
from ..init_mem import READING, compensation, masked
from ..variants import LABELS, VARIANTS, calibrate_variant
from .calibration import snn_calibration, snn_calibration_advanced, snn_calibration_v0
from .fixed_point import fixed_point_init
from .prerun import PRERUN_STEPS, cos_prerun, simulate_cos_layerwise, simulate_prerun, srp_prerun


@dataclass(frozen=True)
class Options:
    """What a method's set-up reads besides the SNN, T and the calibration images."""
    reading: str = READING           # Alg. 2 reading
    granularity: str = "layer"       # v(0) per layer / channel / neuron
    comp: str = "literal"            # compensation size
    v0_scope: str = "all"            # "block-first": the paper's ResNet treatment (Sec. 4.3)
    prerun: int = PRERUN_STEPS       # rho (COS), tau (SRP)


@dataclass(frozen=True)
class Setup:
    """A method set up at T: the SNN to simulate (the converted one, or one the method built
    around it: SNN Calibration's currents) and the ``prerun`` uncounted steps its runs begin
    with (COS, SRP), which ``simulate(snn, x, T, **kw)`` runs before the T counted ones."""
    snn: SNN
    prerun: int = 0
    simulate: Callable | None = None

    def run(self, x, T: int, **kw):
        """T counted steps on ``x`` (after the pre-run, if any): a SimResult."""
        if self.simulate is None:
            return self.snn.run(x, T, **kw)
        return self.simulate(self.snn, x, T, **kw)


@dataclass(frozen=True)
class Recipe:
    """The calibration a method's own code pairs it with (``--calib-recipe official``)."""
    thresholds: str = "mse"          # threshold search
    images: int = 128                # one batch of this many training images
    augment: bool = True             # random crop and flip, as in training


@dataclass(frozen=True)
class Method:
    """A method by name. ``set_up(snn, T, calib, options) -> Setup`` (called by ``setup``);
    ``needs_data``: it runs the SNN on calibration images, ``calib_passes`` times or,
    ``layer_by_layer``, once per IF node; ``recipe``: the calibration its own code uses."""
    label: str
    summary: str
    set_up: Callable
    needs_data: bool = False
    layer_by_layer: bool = False
    recipe: Recipe | None = None
    calib_passes: int = 1
    prerun: str = ""                 # "network": rho uncounted steps first; "layer": rho per node

    def setup(self, snn: SNN, T: int, calib=None, options: Options = Options()) -> Setup:
        """Set the method up on ``snn`` for T steps (``calib``: batches of training images)."""
        if self.needs_data and not calib:
            raise ValueError(f"{self.label} needs calibration batches of training images")
        return self.set_up(snn, check_T(T), calib, options)

    def passes(self, n_nodes: int) -> int:
        """How many times it runs the SNN on the calibration images (for ETAs)."""
        return 0 if not self.needs_data else n_nodes if self.layer_by_layer else self.calib_passes

    def prerun_steps(self, rho: int, n_nodes: int) -> int:
        """The uncounted steps its runs begin with: rho, rho per IF node, or none."""
        return {"network": rho, "layer": n_nodes * rho}.get(self.prerun, 0)


def keep_of(snn: SNN, o: Options):
    """Per node False where v(0) stays 0 (the paper's ResNet blocks), or None (every node)."""
    return snn.block_first() if o.v0_scope == "block-first" else None


def paper(variant: str):
    """The set-up of one of the paper's variants: ``calibrate_variant``."""
    def setup(snn, T, calib, o: Options):
        calibrate_variant(snn, variant, T, calib, o.reading, o.granularity, o.comp, o.v0_scope)
        return Setup(snn)
    return setup


def fixed_point(snn, T, calib, o: Options):
    start = calibrate_variant(snn, "ic-snn", T, calib, o.reading, o.granularity, o.comp, o.v0_scope)
    v0, _ = fixed_point_init(snn, calib, T, o.reading, o.granularity, start, keep=keep_of(snn, o))
    snn.set_v0(masked(v0, keep_of(snn, o)))
    return Setup(snn)


def calibration_light(snn, T, calib, o: Options):
    return Setup(snn_calibration(snn, calib, T, keep=keep_of(snn, o)))


def calibration_advanced(snn, T, calib, o: Options):
    return Setup(snn_calibration_advanced(snn, calib, T, keep=keep_of(snn, o)))


def calibration_v0(snn, T, calib, o: Options):
    snn.set_v0(masked(snn_calibration_v0(snn, calib, T, keep=keep_of(snn, o)), keep_of(snn, o)))
    return Setup(snn)


def half_threshold(snn, T, o: Options):
    """v(0) = V_th/2 per node: where COS, SRP (and QCFS, C-SNN ``half``) start."""
    snn.set_v0(masked(compensation(snn, T, "half"), keep_of(snn, o)))


def cos(snn, T, calib, o: Options):
    half_threshold(snn, T, o)
    pre = cos_prerun(o.prerun)
    return Setup(snn, pre.steps, lambda s, x, T_, **kw: simulate_prerun(s, x, T_, pre, **kw))


def cos_layer(snn, T, calib, o: Options):
    half_threshold(snn, T, o)
    return Setup(snn, len(snn.nodes) * o.prerun,
                 lambda s, x, T_, **kw: simulate_cos_layerwise(s, x, T_, o.prerun, **kw))


def srp(snn, T, calib, o: Options):
    half_threshold(snn, T, o)
    pre = srp_prerun(o.prerun)
    return Setup(snn, pre.steps, lambda s, x, T_, **kw: simulate_prerun(s, x, T_, pre, **kw))


SUMMARIES = {"snn": "v(0) = 0", "i-snn": "v(0) = Alg. 2 (mean v(T) of the plain SNN)",
             "c-snn": "v(0) = compensation C", "ic-snn": "v(0) = Alg. 3: R + C",
             "i-snn-alg1": "v(0) = Alg. 1 (weights only)"}
OFFICIAL = Recipe()
METHODS = {v: Method(LABELS[v], SUMMARIES[v], paper(v), v in ("i-snn", "ic-snn")) for v in VARIANTS}
METHODS.update({
    "ic-snn-fp": Method("IC-SNN fixed point (ours)", "Alg. 2 iterated from Alg. 3's v(0)",
                        fixed_point, True, calib_passes=6),     # Alg. 2, then up to 5 more
    "snn-calib": Method("SNN Calibration (light)", "current theta/(2T) + mean(ANN - SNN) per "
                        "channel every step, layer by layer; v(0) = 0", calibration_light, True,
                        True, OFFICIAL),
    "snn-calib-adv": Method("SNN Calibration (advanced)", "current theta/(2T) every step; v(0) "
                            "per neuron = T mean(ANN - SNN), layer by layer", calibration_advanced,
                            True, True, OFFICIAL),
    "snn-calib-v0": Method("SNN Calibration, v(0) form (ablation, ours)", "v(0) = V_th/2 + "
                           "T mean(ANN - SNN) per channel, layer by layer", calibration_v0, True,
                           True, OFFICIAL),
    "cos": Method("COS, whole network (ours)", "v(0) = V_th/2 -/+ V_th per image after rho "
                  "pre-run steps of the whole network", cos, prerun="network"),
    "cos-layer": Method("COS (layer by layer as its code; shift 1 V_th, fires on >)", "v(0) = V_th/2 -/+ V_th per image, "
                        "each layer after rho steps on the calibrated layers below", cos_layer,
                        prerun="layer"),
    "srp": Method("SRP (residual potential)", "v(0) = V_th/2; silenced where v <= 0 after tau "
                  "pre-run steps", srp, prerun="network"),
})
TABLE = METHODS                                          # the earlier name
METHOD_VARIANTS = ("snn-calib", "snn-calib-adv", "cos", "cos-layer", "srp")   # the papers' family
PRERUN_METHODS = ("cos", "cos-layer", "srp")             # a pre-run's steps before the T counted
