"""evaluate_conversion's JSON structure and numbers, the paper-style tables, and the config checks."""
import json

import numpy as np
import pytest
from helpers import F64, tiny_resnet, tiny_vgg

from icsnn_np.beyond.thresholds import channel_threshold
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.runs.evaluate import (ConversionConfig, ann_accuracy, calibrated_snn, convert_balanced,
                               evaluate_conversion, format_accuracy_table, format_table,
                               quantile_for, snn_accuracy)
from icsnn_np.io.preprocess import batched
from icsnn_np.simulate import simulate
from icsnn_np.variants import calibrate_variant

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def tiny_setup():
    """A tiny net (one conv, a spiking fc), 10 calibration and 10 test images; 3 test labels
    differ from the ANN's predictions, so the ANN scores exactly 70 %."""
    net = tiny_vgg(0, widths=(4,), hidden=5, classes=3, bias_scale=None)
    x = (np.random.default_rng(0).random((20, 3, 4, 4)) - 0.5) / 0.25
    y = net.forward(x).argmax(1)
    y[10:13] = (y[10:13] + 1) % 3
    return net, x[:10], x[10:], y[10:]


def test_ann_accuracy():
    net, _, x, y = tiny_setup()
    assert ann_accuracy(net, x, y) == 70.0
    assert ann_accuracy(net, x, y, batch_size=3) == 70.0
    assert ann_accuracy(net, x, net.forward(x).argmax(1)) == 100.0


@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_evaluate_conversion_structure_and_numbers(coding):
    net, xc, xt, yt = tiny_setup()
    cfg = ConversionConfig(T=(2, 8), n_calib=6, batch_size=4, coding=coding)
    lines = []
    res = evaluate_conversion(net, xc, xt, yt, cfg, mean=MEAN, std=STD, log=lines.append)
    json.loads(json.dumps(res))                                         # JSON-ready
    assert res["ann_acc"] == 70.0 and res["n_test"] == 10 and res["n_calib"] == 6
    assert res["backend"] == "numpy" and res["config"]["T"] == [2, 8]
    assert res["config"]["coding"] == coding and res["seconds"] >= 0
    assert list(res["variants"]) == ["snn", "i-snn", "c-snn", "ic-snn"]
    for v, per_t in res["variants"].items():
        assert list(per_t) == ["2", "8"]
        for t, r in per_t.items():
            assert set(r) == {"acc", "loss", "firing_rate", "prerun", "steps"}
            assert r["prerun"] == 0 and r["steps"] == int(t)             # no pre-run here
            assert 0 <= r["acc"] <= 100 and 0 <= r["firing_rate"] <= 1
            assert r["loss"] == pytest.approx(res["ann_acc"] - r["acc"], abs=1e-9)
            assert r["acc"] % 10 == 0                                   # 10 test images
    assert len(lines) == 1 + 2 * 4 and "ANN accuracy 70.00%" in lines[0]


def test_evaluate_numbers_match_a_direct_run():
    """The table's accuracy and firing rate are what one gets by hand with the same steps."""
    net, xc, xt, yt = tiny_setup()
    cfg = ConversionConfig(T=(4,), variants=("snn", "ic-snn"), n_calib=10, batch_size=5).validate()
    res = evaluate_conversion(net, xc, xt, yt, cfg)
    snn = convert(net)
    calib = [xc[:5], xc[5:]]
    balance_thresholds(snn, net, calib, p=cfg.p)
    for v in cfg.variants:
        calibrate_variant(snn, v, 4, calib)
        out = simulate(snn, xt, 4, count=True)
        acc = 100.0 * (out.output.argmax(1) == yt).mean()
        assert res["variants"][v]["4"]["acc"] == pytest.approx(acc)
        assert res["variants"][v]["4"]["firing_rate"] == pytest.approx(out.firing_rate(), abs=1e-5)
        assert snn_accuracy(snn, xt, yt, 4, cfg)[0] == pytest.approx(acc)


def test_format_table_has_the_papers_columns():
    res = {"ann_acc": 92.5, "n_test": 100,
           "variants": {"snn": {"8": {"acc": 80.0, "loss": 12.5, "firing_rate": 0.1},
                                "16": {"acc": 90.25, "loss": 2.25, "firing_rate": 0.1}},
                        "ic-snn": {"16": {"acc": 92.0, "loss": 0.5, "firing_rate": 0.2}}}}
    lines = format_table(res).splitlines()
    assert lines[0] == "| Method | ANN_ACC | T8-L | T16-L |"                # T sorted numerically
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| SNN | 92.50 | 12.50 | 2.25 |"
    assert lines[3] == "| IC-SNN | 92.50 |  | 0.50 |"                         # missing T: empty cell
    assert format_table(res, labels={"snn": "Ours"}).splitlines()[2].startswith("| Ours |")
    text = format_accuracy_table(res)
    assert "ANN accuracy: 92.50%" in text and "80.00 / 12.50 / 0.100" in text
    assert "T=8" in text and "T=16" in text


def test_config_validate_normalises_and_accepts_defaults():
    cfg = ConversionConfig(T=[8, np.int64(16)]).validate()
    assert cfg.T == (8, 16) and all(type(t) is int for t in cfg.T)
    ConversionConfig().validate()
    ConversionConfig(variants=("ic-snn-fp", "i-snn-alg1"), p=1.0).validate()
    assert ConversionConfig().engine == "fast" and ConversionConfig().chunk is None   # runs/engine.py
    ConversionConfig(engine="fast", chunk=8).validate()


def test_inputs_carries_the_input_settings():
    cfg = ConversionConfig(coding="rate", engine="fast", chunk=3, seed=4)
    assert cfg.inputs((0.5,), (0.2,)) == dict(coding="rate", seed=4, mean=(0.5,), std=(0.2,))
    assert ConversionConfig().inputs() == dict(coding="direct", seed=0, mean=None, std=None)


@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_fast_engine_gives_the_reference_table(coding):
    """engine="fast" changes how the SNN is simulated, not what it computes: on a float64
    net the same accuracies and firing rates as the step-by-step reference."""
    net, xc, xt, yt = tiny_setup()
    kw = dict(T=(3, 8), n_calib=10, batch_size=5, coding=coding)
    ref = evaluate_conversion(net, xc, xt, yt, ConversionConfig(engine="reference", **kw), mean=MEAN,
                              std=STD)
    fast = evaluate_conversion(net, xc, xt, yt, ConversionConfig(engine="fast", chunk=3, **kw),
                               mean=MEAN, std=STD)
    assert fast["variants"] == ref["variants"]
    assert fast["config"]["engine"] == "fast" and ref["config"]["engine"] == "reference"


def test_quantile_for_prefers_the_argument_then_the_checkpoint():
    assert quantile_for({}, None) == ConversionConfig.p == 0.99
    assert quantile_for({"p": 0.9995}) == 0.9995
    assert quantile_for({"p": 0.9995}, 0.9) == 0.9


def test_convert_balanced_sets_the_quantile_thresholds():
    net, xc, _, _ = tiny_setup()
    cfg = ConversionConfig(p=0.9).validate()
    snn, ths = convert_balanced(net, batched(xc, 4), cfg)
    assert [n.v_th for n in snn.nodes] == ths and len(ths) == 2
    direct = balance_thresholds(convert(net), net, [xc], p=0.9)
    np.testing.assert_allclose(ths, direct, rtol=1e-6)


@pytest.mark.parametrize("kw, match", [
    (dict(T=(8, 0)), "T must be a positive integer"),
    (dict(T=(2.5,)), "T must be a positive integer"),
    (dict(T=("8",)), "T must be a positive integer"),
    (dict(T=(True,)), "T must be a positive integer"),
    (dict(variants=("snn", "x-snn")), "unknown variant 'x-snn'"),
    (dict(coding="temporal"), "unknown input coding 'temporal'"),
    (dict(reading="median"), "unknown Alg. 2 reading 'median'"),
    (dict(granularity="pixel"), "unknown granularity 'pixel'"),
    (dict(comp="double"), "unknown compensation 'double'"),
    (dict(p=0.0), r"quantile p must be a number in \(0, 1\]"),
    (dict(p=1.5), r"quantile p must be a number in \(0, 1\]"),
    (dict(n_calib=0), "n_calib must be an integer >= 1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(engine="turbo"), "unknown engine 'turbo'"),
    (dict(chunk=0), "chunk must be an integer >= 1"),
    (dict(chunk=2.5), "chunk must be an integer >= 1"),
])
def test_config_validate_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        ConversionConfig(**kw).validate()


def test_evaluate_rejects_a_bad_config_before_any_work():
    net, xc, xt, yt = tiny_setup()
    with pytest.raises(ValueError, match="unknown variant"):
        evaluate_conversion(net, xc, xt, yt, ConversionConfig(variants=("nope",)))
    with pytest.raises(ValueError, match="rate coding needs the normalisation mean and std"):
        evaluate_conversion(net, xc, xt, yt, ConversionConfig(T=(2,), coding="rate", n_calib=2))


def test_paper_block_treatment_reaches_the_resnet_blocks():
    """block="paper": one V_th per residual block and v(0) on its first node only, in the
    SNN that calibrated_snn builds (what evaluate_conversion measures)."""
    net = tiny_resnet(0, widths=(4, 4), pool=2, bias_scale=None, dtype=F64)
    x = (np.random.default_rng(0).random((8, 3, 4, 4)) - 0.5) / 0.25
    cfg = ConversionConfig(T=(4,), n_calib=8, batch_size=4, block="paper", comp="half")
    snn, _ = calibrated_snn(net, x, "c-snn", 4, cfg)
    assert snn.nodes[1].v_th == snn.nodes[2].v_th != snn.nodes[0].v_th
    assert snn.nodes[3].v_th == snn.nodes[4].v_th
    assert [n.v0 for n in snn.nodes][2] == 0.0 and [n.v0 for n in snn.nodes][1] == pytest.approx(snn.nodes[1].v_th / 2)
    assert [n.v0 for n in snn.nodes][4] == 0.0 and [n.v0 for n in snn.nodes][3] == pytest.approx(snn.nodes[3].v_th / 2)
    plain, _ = calibrated_snn(net, x, "c-snn", 4, ConversionConfig(T=(4,), n_calib=8, batch_size=4,
                                                                comp="half"))
    assert [n.v0 for n in plain.nodes][2] == pytest.approx(plain.nodes[2].v_th / 2)
    with pytest.raises(ValueError, match="unknown block treatment"):
        ConversionConfig(block="blocks").validate()


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("engine", ["reference", "fast"])
@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_evaluate_conversion_on_backend_agrees_with_numpy(xp, engine, coding):
    """The whole table (ANN accuracy, every variant at every T, firing rates) with the
    network and the images on the device and the labels on the host: NumPy's table."""
    from icsnn_np.backend import to_device
    net, xc, xt, yt = tiny_setup()
    cfg = dict(T=(2, 5), n_calib=6, batch_size=4, coding=coding, engine=engine, chunk=2,
               channelwise=True)
    want = evaluate_conversion(net, xc, xt, yt, ConversionConfig(**cfg), mean=MEAN, std=STD)
    net.to(xp)
    got = evaluate_conversion(net, to_device(xc, xp), to_device(xt, xp), yt, ConversionConfig(**cfg),
                              mean=MEAN, std=STD)
    assert got["backend"] == ("numpy" if xp is np else "cupy")
    assert got["ann_acc"] == want["ann_acc"] and got["variants"] == want["variants"]
    assert ann_accuracy(net, to_device(xt, xp), yt) == want["ann_acc"]
