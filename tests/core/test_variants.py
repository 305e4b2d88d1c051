"""variants.py: each named variant sets the v(0) its definition says (SNN 0, I-SNN Alg. 2 on
the plain SNN, C-SNN the compensation, IC-SNN Alg. 3, ...), the paper's ResNet treatment
gives v(0) to the first IF node of a block only, and bad choices are clear errors."""
import re

import numpy as np
import pytest
from helpers import tiny_resnet_snn, tiny_vgg_snn

from icsnn_np.beyond.fixed_point import fixed_point_init
from icsnn_np.beyond.methods import METHODS, Options
from icsnn_np.init_mem import alg1_weight_init, alg2_data_init, alg3_ic_init, compensation
from icsnn_np.runs.engine import use_engine
from icsnn_np.runs.tables import setting_key
from icsnn_np.simulate import simulate
from icsnn_np.variants import LABELS, NEEDS_DATA, PAPER_VARIANTS, V0_SCOPES, VARIANTS, calibrate_variant


def v0s(snn):
    return [n.v0 for n in snn.nodes]


def set_up(snn, name, T, batches=None, **opts):
    """Any method by name (beyond/methods.py), set up as the runs do; returns its v(0)."""
    METHODS[name].setup(snn, T, batches, Options(**opts))
    return v0s(snn)


def test_the_variant_table():
    assert PAPER_VARIANTS == ("snn", "i-snn", "c-snn", "ic-snn")
    assert set(PAPER_VARIANTS) < set(VARIANTS) and "i-snn-alg1" in VARIANTS
    assert [LABELS[v] for v in PAPER_VARIANTS] == ["SNN", "I-SNN", "C-SNN", "IC-SNN"]
    assert set(NEEDS_DATA) == {"i-snn", "ic-snn"}
    assert {v for v, m in METHODS.items() if m.needs_data} >= {"i-snn", "ic-snn", "ic-snn-fp"}
    assert set(VARIANTS) == set(PAPER_VARIANTS) | {"i-snn-alg1"}          # the paper's only
    assert {"ic-snn-fp", "snn-calib", "snn-calib-adv", "snn-calib-v0", "cos", "cos-layer", "srp"} == \
        set(METHODS) - set(VARIANTS)                                       # beyond/
    assert V0_SCOPES == ("all", "block-first")


def test_calibrate_variant_sets_v0():
    snn, batches = tiny_vgg_snn()
    T = 6
    assert calibrate_variant(snn, "snn", T) == [0.0] * 3 and v0s(snn) == [0.0] * 3
    c = calibrate_variant(snn, "c-snn", T, comp="literal")
    assert c == [th / (2 * T) for th in (1.0, 0.8, 0.6)] and v0s(snn) == c
    assert calibrate_variant(snn, "c-snn", T, comp="half") == [th / 2 for th in (1.0, 0.8, 0.6)]
    # i-snn is Alg. 2 on the plain SNN, whatever v(0) the SNN held before
    snn.set_v0([0.0] * 3)
    expect_i = alg2_data_init(snn, batches, T)
    snn.set_v0([0.7] * 3)
    i = calibrate_variant(snn, "i-snn", T, batches)
    assert i == expect_i and v0s(snn) == i
    # ic-snn is Alg. 3
    snn.set_v0([0.0] * 3)
    expect_ic = alg3_ic_init(snn, batches, T, comp="half")
    snn.set_v0([0.0] * 3)
    ic = calibrate_variant(snn, "ic-snn", T, batches, comp="half")
    np.testing.assert_allclose(ic, expect_ic)
    assert v0s(snn) == ic
    assert calibrate_variant(snn, "i-snn-alg1", T) == alg1_weight_init(snn, T)
    # ic-snn-fp: the fixed point iterated from Alg. 3's v(0)
    snn.set_v0([0.0] * 3)
    start = alg3_ic_init(snn, batches, T)
    expect_fp, _ = fixed_point_init(snn, batches, T, "remainder", start=start)
    fp = set_up(snn, "ic-snn-fp", T, batches)
    np.testing.assert_allclose(fp, expect_fp)
    assert len(fp) == 3 and v0s(snn) == fp


def test_calibrated_v0_changes_the_simulation():
    """The calibrated v0 really is used by the simulation (the spikes change)."""
    snn, batches = tiny_vgg_snn()
    calibrate_variant(snn, "snn", 8)
    a = simulate(snn, batches[0], 8, count=True).spikes
    calibrate_variant(snn, "c-snn", 8, comp="half")
    b = simulate(snn, batches[0], 8, count=True).spikes
    assert a != b


def test_the_engine_and_coding_the_snn_carries_reach_the_calibration():
    """The engine (plugged in from outside, once) and the input coding (coding, mean, std,
    seed) the SNN carries go to every simulation the variant runs."""
    snn, batches = tiny_vgg_snn()
    mean, std = (0.5, 0.5), (0.5, 0.5)
    direct = calibrate_variant(snn, "i-snn", 6, batches, reading="raw")
    snn.coding = dict(coding="rate", mean=mean, std=std, seed=1)
    rate = calibrate_variant(snn, "i-snn", 6, batches, reading="raw")
    use_engine(snn, "fast", chunk=4)
    fast = calibrate_variant(snn, "i-snn", 6, batches, reading="raw")
    assert direct != rate
    np.testing.assert_allclose(fast, rate, rtol=1e-6, atol=1e-9)


def test_setting_key_names_what_a_variant_depends_on():
    opts = dict(reading="remainder", granularity="layer", comp="literal")
    assert setting_key("snn", **opts) == ("snn",)
    assert setting_key("i-snn", **opts) == ("i-snn", "remainder", "layer")
    assert setting_key("c-snn", **opts) == ("c-snn", "literal")
    assert setting_key("ic-snn", **opts) == ("ic-snn", "remainder", "layer", "literal")
    assert setting_key("i-snn", **opts) != setting_key("i-snn", **dict(opts, reading="raw"))
    assert setting_key("c-snn", **opts) == setting_key("c-snn", **dict(opts, reading="raw"))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("T", [0, -1, 2.5, "8", True])
def test_bad_T_is_a_clear_error(T):
    snn, batches = tiny_vgg_snn()
    with pytest.raises(ValueError, match="T must be a positive integer"):
        calibrate_variant(snn, "snn", T)


def test_variant_errors_are_clear():
    snn, batches = tiny_vgg_snn()
    with pytest.raises(ValueError, match="unknown variant 'q-snn'"):
        calibrate_variant(snn, "q-snn", 4, batches)
    for v in ("i-snn", "ic-snn"):
        with pytest.raises(ValueError, match=f"variant '{v}' needs calibration batches"):
            calibrate_variant(snn, v, 4)
    for v in ("ic-snn-fp", "snn-calib"):
        with pytest.raises(ValueError, match=re.escape(f"{METHODS[v].label} needs calibration batches")):
            set_up(snn, v, 4)
    with pytest.raises(ValueError, match="unknown compensation"):
        calibrate_variant(snn, "c-snn", 4, comp="third")
    with pytest.raises(ValueError, match="unknown Alg. 2 reading 'mean'"):
        calibrate_variant(snn, "i-snn", 4, batches, reading="mean")


# --------------------------------------------------------------------------- ResNet blocks (Sec. 4.3)
@pytest.mark.parametrize("variant", ["c-snn", "i-snn", "ic-snn", "ic-snn-fp"])
def test_block_first_scope_gives_v0_only_to_the_first_node_of_a_block(variant):
    snn, batches = tiny_resnet_snn()
    assert snn.blocks == [[1, 2], [3, 4]]
    v0 = set_up(snn, variant, 8, batches, comp="half", v0_scope="block-first")
    assert [float(v) == 0.0 for v in v0] == [False, False, True, False, True]
    assert v0s(snn) == v0
    if variant == "c-snn":
        assert v0[1] == pytest.approx(snn.nodes[1].v_th / 2)
    every = set_up(snn, variant, 8, batches, comp="half")                   # scope "all"
    assert all(float(v) != 0.0 for v in every)


def test_block_first_ic_snn_measures_alg2_with_the_scoped_compensation():
    """R of the first node of a block is Alg. 2 on the SNN whose blocks' second nodes start at 0."""
    snn, batches = tiny_resnet_snn()
    v0 = calibrate_variant(snn, "ic-snn", 8, batches, comp="half", v0_scope="block-first")
    C = compensation(snn, 8, "half")
    snn.set_v0([C[0], C[1], 0.0, C[3], 0.0])
    R = alg2_data_init(snn, batches, 8)
    for i in (0, 1, 3):
        assert v0[i] == pytest.approx(R[i] + C[i])


def test_unknown_v0_scope_is_a_clear_error():
    snn, batches = tiny_resnet_snn()
    with pytest.raises(ValueError, match="unknown v\\(0\\) scope 'blocks'"):
        calibrate_variant(snn, "snn", 8, batches, v0_scope="blocks")


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("v0_scope", V0_SCOPES)
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_every_variant_on_backend_agrees_with_numpy(xp, v0_scope, granularity):
    """Every variant calibrated with the ResNet and its batches on the device: NumPy's v(0)
    (array v(0) on the device) and NumPy's simulation with it."""
    from icsnn_np.backend import to_device, to_host, xp_of
    from icsnn_np.init_mem import host
    snn, batches = tiny_resnet_snn()
    use_engine(snn, "fast", chunk=3)
    kw = dict(granularity=granularity, v0_scope=v0_scope)
    paper = [v for v in METHODS if METHODS[v].recipe is None]     # v(0) methods, no currents
    want = {}
    for v in paper:
        want[v] = ([host(a) for a in set_up(snn, v, 4, batches, **kw)],
                   to_host(simulate(snn, batches[0], 4).output))
    snn.tree.to(xp)
    dev = [to_device(b, xp) for b in batches]
    for v in paper:
        v0 = set_up(snn, v, 4, dev, **kw)
        assert all(np.ndim(a) == 0 or xp_of(a) is xp for a in v0), v
        for g, w in zip(v0, want[v][0]):
            np.testing.assert_allclose(host(g), w, rtol=1e-6, atol=1e-7, err_msg=v)
        np.testing.assert_allclose(to_host(simulate(snn, dev[0], 4).output), want[v][1],
                                   rtol=1e-9, atol=1e-9, err_msg=v)
