"""The variants of the paper's tables, by name: how each one sets v(0).

    snn         v(0) = 0                                          (plain conversion)
    i-snn       v(0) = Alg. 2 on the plain SNN                    (Sec. 3.3, data-based)
    c-snn       v(0) = C, the coding compensation                 (Sec. 3.4, Alg. 3 lines 4-6)
    ic-snn      v(0) = R + C, R = Alg. 2 on the SNN with v(0) = C  (Alg. 3)
    i-snn-alg1  v(0) = Alg. 1, from the weights only              (Sec. 3.3)

    v0 = calibrate_variant(snn, "ic-snn", T=8, batches=calib)    # sets and returns v(0)

Methods beyond the paper (``icsnn_np.beyond``) add their own ``Variant`` entries to a table
of their own and pass it as ``table``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .checks import check_choice, check_T
from .init_mem import READING, alg1_weight_init, alg2_data_init, alg3_ic_init, compensation, masked
from .simulate import simulate

V0_SCOPES = ("all", "block-first")


@dataclass
class Setting:
    """What a variant's v(0) may depend on, besides the network and T."""
    batches: list | None = None        # calibration images (normalised, on the device)
    reading: str = READING             # Alg. 2 reading
    granularity: str = "layer"         # v(0) per layer / channel / neuron
    comp: str = "literal"              # compensation size
    xp: object = np                    # array module of the network
    keep: list | None = None           # per node: False = v(0) stays 0 (ResNet block treatment)
    sim: Callable = simulate           # the simulation the data-based variants run
    sim_kw: dict = field(default_factory=dict)   # for ``sim`` (coding, mean, std, seed)


@dataclass(frozen=True)
class Variant:
    label: str                               # as in the paper's tables
    summary: str                             # one line: what v(0) is
    needs_data: bool                         # runs the SNN on calibration images
    v0: Callable                             # v0(snn, T, setting) -> list of v(0), one per node
    depends_on: tuple = ()                   # the Setting fields its v(0) depends on


def _alg2(snn, T, s: Setting):
    snn.set_v0([0.0] * len(snn.nodes))
    return alg2_data_init(snn, s.batches, T, s.reading, s.granularity, s.xp, s.sim, **s.sim_kw)


def alg3(snn, T, s: Setting):
    """Alg. 3 with a variant's settings (IC-SNN's v(0))."""
    return alg3_ic_init(snn, s.batches, T, s.comp, s.reading, s.granularity, s.xp, s.keep, s.sim,
                        **s.sim_kw)


VARIANTS = {
    "snn": Variant("SNN", "v(0) = 0", False, lambda snn, T, s: [0.0] * len(snn.nodes)),
    "i-snn": Variant("I-SNN", "v(0) = Alg. 2 (mean v(T) of the plain SNN)", True, _alg2,
                     ("reading", "granularity")),
    "c-snn": Variant("C-SNN", "v(0) = compensation C", False,
                     lambda snn, T, s: compensation(snn, T, s.comp), ("comp",)),
    "ic-snn": Variant("IC-SNN", "v(0) = Alg. 3: R + C", True, alg3,
                      ("reading", "granularity", "comp")),
    "i-snn-alg1": Variant("I-SNN Alg. 1", "v(0) = Alg. 1 (weights only)", False,
                          lambda snn, T, s: alg1_weight_init(snn, T)),
}
PAPER_VARIANTS = ("snn", "i-snn", "c-snn", "ic-snn")


def calibrate_variant(snn, variant: str, T: int, batches=None, reading: str = READING,
                      granularity: str = "layer", comp: str = "literal", xp=np,
                      v0_scope: str = "all", sim=simulate, table=VARIANTS, **sim_kw):
    """Set ``snn``'s v(0) for ``variant`` (calibrated for T) and return the v(0) list.

    ``batches`` (training images, normalised, on the device; a list: it is iterated more than
    once) feed the data-based variants. ``v0_scope="block-first"`` is the paper's ResNet
    treatment: v(0) only on the first IF node of each residual block, the others keep 0.
    """
    T = check_T(T)
    spec = table[check_choice(variant, table, "variant")]
    check_choice(v0_scope, V0_SCOPES, "v(0) scope")
    if spec.needs_data and not batches:
        raise ValueError(f"variant {variant!r} needs calibration batches of training images")
    keep = snn.block_first() if v0_scope == "block-first" else None
    v0 = masked(spec.v0(snn, T, Setting(batches, reading, granularity, comp, xp, keep, sim,
                                        sim_kw)), keep)
    snn.set_v0(v0)
    return v0


def setting_key(variant: str, table=VARIANTS, **opts) -> tuple:
    """What a variant's v(0) depends on: two rows with the same key give the same numbers
    (e.g. "I-SNN remainder" is the I-SNN row when remainder is the default), so run once."""
    return (variant,) + tuple(opts.get(k) for k in table[variant].depends_on)
