"""The variants of the paper's tables, by name: how each one sets v(0).

    snn         v(0) = 0                                          (plain conversion)
    i-snn       v(0) = Alg. 2 on the plain SNN                    (Sec. 3.3, data-based)
    c-snn       v(0) = C, the coding compensation                 (Sec. 3.4, Alg. 3 lines 4-6)
    ic-snn      v(0) = R + C, R = Alg. 2 on the SNN with v(0) = C  (Alg. 3)
    i-snn-alg1  v(0) = Alg. 1, from the weights only              (Sec. 3.3)

    v0 = calibrate_variant(snn, "ic-snn", T=8, batches=calib)    # sets and returns v(0)
"""
from __future__ import annotations

from .checks import check_choice, check_T
from .init_mem import READING, alg1_weight_init, alg2_data_init, alg3_ic_init, compensation, masked

PAPER_VARIANTS = ("snn", "i-snn", "c-snn", "ic-snn")
VARIANTS = PAPER_VARIANTS + ("i-snn-alg1",)
LABELS = {"snn": "SNN", "i-snn": "I-SNN", "c-snn": "C-SNN", "ic-snn": "IC-SNN",
          "i-snn-alg1": "I-SNN Alg. 1"}                 # as in the paper's tables
NEEDS_DATA = ("i-snn", "ic-snn")                        # run the SNN on calibration images
V0_SCOPES = ("all", "block-first")


def variant_v0(snn, variant: str, T: int, batches=None, reading: str = READING,
               granularity: str = "layer", comp: str = "literal", keep=None):
    """The v(0) list ``variant`` prescribes for ``snn`` at T (``keep``: see alg3_ic_init)."""
    if variant == "snn":
        return [0.0] * len(snn.nodes)
    if variant == "i-snn":                     # Alg. 2 on the plain SNN: from v(0) = 0
        snn.set_v0([0.0] * len(snn.nodes))
        return alg2_data_init(snn, batches, T, reading, granularity)
    if variant == "c-snn":
        return compensation(snn, T, comp)
    if variant == "ic-snn":
        return alg3_ic_init(snn, batches, T, comp, reading, granularity, keep)
    if variant == "i-snn-alg1":
        return alg1_weight_init(snn, T)
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def calibrate_variant(snn, variant: str, T: int, batches=None, reading: str = READING,
                      granularity: str = "layer", comp: str = "literal", v0_scope: str = "all"):
    """Set ``snn``'s v(0) for ``variant`` at T and return it. ``batches``: normalised training
    images on the device (a list) for the data-based variants; ``v0_scope="block-first"``: the
    paper's ResNet treatment, v(0) on the first IF node of each residual block only (Sec. 4.3)."""
    T = check_T(T)
    check_choice(variant, VARIANTS, "variant")
    check_choice(v0_scope, V0_SCOPES, "v(0) scope")
    if variant in NEEDS_DATA and not batches:
        raise ValueError(f"variant {variant!r} needs calibration batches of training images")
    keep = snn.block_first() if v0_scope == "block-first" else None
    v0 = masked(variant_v0(snn, variant, T, batches, reading, granularity, comp, keep), keep)
    snn.set_v0(v0)
    return v0
