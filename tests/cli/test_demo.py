"""The demo CLI, end to end on tiny sizes (real bundled slice, small model: the ``tiny_ckpt``
fixture, tests/cli/conftest.py). (The reproduction CLI: test_reproduce.py.)"""
import json

import numpy as np
import pytest

from helpers import run_sim, write_test_batch

from icsnn_np import backend
from icsnn_np.cli import demo
from icsnn_np.io.checkpoint import save_checkpoint
from icsnn_np.io.data import load_dataset


def test_demo_json_has_every_variant_and_T(tiny_ckpt, capsys):
    rc = demo.main(["--checkpoint", str(tiny_ckpt), "--T", "4", "6", "--n-test", "30",
                    "--n-calib", "20", "--batch-size", "15", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert 0 <= res["ann_acc"] <= 100
    assert set(res["variants"]) == {"snn", "i-snn", "c-snn", "ic-snn"}
    for per_t in res["variants"].values():
        assert set(per_t) == {"4", "6"}
        for r in per_t.values():
            assert r["loss"] == pytest.approx(res["ann_acc"] - r["acc"], abs=0.011)
            assert 0 <= r["firing_rate"] <= 1


def test_demo_table_output(tiny_ckpt, capsys):
    rc = demo.main(["--checkpoint", str(tiny_ckpt), "--T", "4", "--n-test", "20", "--n-calib", "10",
                    "--variants", "snn", "c-snn"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ANN accuracy" in out and "c-snn" in out and "i-snn" not in out


def test_demo_uses_the_p_stored_with_the_model_unless_given(tiny_ckpt, tmp_path, capsys):
    """A checkpoint may carry the threshold quantile chosen for it (the bundled one does);
    --p overrides it; without either the package default 0.99 applies."""
    from icsnn_np.io.checkpoint import load_checkpoint
    model, header = load_checkpoint(tiny_ckpt)
    with_p = tmp_path / "with_p.npz"
    save_checkpoint(with_p, model, header["arch"], 10, dict(header, p=0.9995, p_chosen_by="a test"))
    common = ["--T", "4", "--n-test", "10", "--n-calib", "10", "--variants", "snn", "--json"]
    ps = {}
    for name, args in (("stored", ["--checkpoint", str(with_p)]),
                       ("given", ["--checkpoint", str(with_p), "--p", "0.9"]),
                       ("default", ["--checkpoint", str(tiny_ckpt)])):
        assert demo.main(args + common) == 0
        ps[name] = json.loads(capsys.readouterr().out)["config"]["p"]
    assert ps == {"stored": 0.9995, "given": 0.9, "default": 0.99}


def test_demo_on_a_test_batch_alone_calibrates_on_the_slice(tiny_ckpt, tmp_path, capsys):
    """--dataset cifar10 --calib-from cifar10-slice reads the test batch alone; with the
    slice's test images in it, it gives the slice demo's numbers (same calibration images,
    same test images) and says which images calibrate; without --calib-from: one line."""
    sl = load_dataset("cifar10-slice")
    write_test_batch(tmp_path / "alone", sl.x_test[:40], sl.y_test[:40])
    common = ["--checkpoint", str(tiny_ckpt), "--T", "4", "--n-test", "30", "--n-calib", "20",
              "--batch-size", "15", "--json"]
    assert demo.main(common + ["--dataset", "cifar10", "--data-dir", str(tmp_path / "alone"),
                               "--calib-from", "cifar10-slice"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert demo.main(common) == 0
    sliced = json.loads(capsys.readouterr().out)
    assert alone["dataset"] == "cifar10" and sliced["dataset"] == "cifar10-slice"
    assert alone["images"] == {"calibration": "20 training images of cifar10-slice (seed 0)",
                               "test": "first 30 test images of cifar10"}
    assert (alone["ann_acc"], alone["variants"]) == (sliced["ann_acc"], sliced["variants"])
    assert demo.main(common[:-1] + ["--dataset", "cifar10", "--data-dir", str(tmp_path / "alone"),
                                    "--calib-from", "cifar10-slice"]) == 0
    assert "calibration: 20 training images of cifar10-slice" in capsys.readouterr().out
    for extra, msg in ((["--dataset", "cifar10"], "data_batch_1.bin is missing"),
                       (["--dataset", "cifar100", "--calib-from", "cifar10-slice"],
                        "needs --dataset cifar10")):
        assert demo.main(common + ["--data-dir", str(tmp_path / "alone")] + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, msg", [
    (["--T", "0"], "T must be a positive integer"),
    (["--p", "1.5"], "p must be a number in"),
    (["--variants", "x-snn"], "unknown variant"),
])
def test_demo_bad_input_is_one_clear_error(tiny_ckpt, capsys, args, msg):
    rc = demo.main(["--checkpoint", str(tiny_ckpt), "--n-test", "5"] + args)
    assert rc == 2
    assert msg in capsys.readouterr().err


def test_demo_missing_checkpoint(tmp_path, capsys):
    rc = demo.main(["--checkpoint", str(tmp_path / "nope.npz"), "--n-test", "5"])
    assert rc == 2
    assert "nope.npz" in capsys.readouterr().err


def test_demo_cupy_missing_says_how_to_install(tiny_ckpt, capsys, monkeypatch):
    monkeypatch.setattr(backend, "cupy", None)                  # no CuPy, no stand-in
    monkeypatch.setattr(backend, "cupy_error", "CuPy is not installed: install the GPU extra with "
                        "`pip install 'icsnn-np[gpu]'`")
    rc = demo.main(["--backend", "cupy", "--checkpoint", str(tiny_ckpt)])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install" in err and len(err.strip().splitlines()) == 1


def test_demo_stats_counts_the_spikes_of_the_calibrated_variant(tiny_ckpt, capsys):
    """--stats reports, per image, the spikes of the IC-SNN the demo evaluates; recount them
    with the demo's protocol (a seeded calibration sample of training images, the first
    test images) and the same engine (the fast one, named explicitly)."""
    engine = "fast"
    from icsnn_np.io.checkpoint import load_checkpoint
    from icsnn_np.runs.evaluate import ConversionConfig, calibrated_snn
    from icsnn_np.io.preprocess import normalize
    from icsnn_np.runs.protocol import calibration_split
    from icsnn_np.simulate import simulate

    rc = demo.main(["--checkpoint", str(tiny_ckpt), "--T", "4", "--n-test", "12", "--n-calib", "10",
                    "--batch-size", "6", "--variants", "snn", "ic-snn", "--stats", "--n-stats", "6",
                    "--engine", engine, "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    st = res["stats"]
    assert st["variant"] == "ic-snn" and set(st["per_T"]) == {"4"}
    assert res["config"]["engine"] == engine
    d = st["per_T"]["4"]
    assert d["n_images"] == 6 and d["T"] == 4 and d["total"]["sops"] >= 0

    model, h = load_checkpoint(tiny_ckpt)
    ds = load_dataset("cifar10-slice")
    cal, _ = calibration_split(len(ds.x_train), 10, 0)
    x_cal = normalize(ds.x_train[cal], h["mean"], h["std"], np)
    x = normalize(ds.x_test[:6], h["mean"], h["std"], np)
    cfg = ConversionConfig(T=(4,), n_calib=10, batch_size=6, engine=engine)
    snn, _ = calibrated_snn(model, x_cal, "ic-snn", 4, cfg, mean=h["mean"], std=h["std"])
    counted = run_sim(snn, x, 4, count=True, engine=engine)
    spikes = [r["spikes"] for r in d["layers"][1:]]
    assert spikes == pytest.approx([s / 6 for s in counted.spikes])
    assert sum(counted.spikes) > 0


def test_demo_stats_table(tiny_ckpt, capsys):
    rc = demo.main(["--checkpoint", str(tiny_ckpt), "--T", "4", "--n-test", "8", "--n-calib", "8",
                    "--variants", "snn", "--stats", "--n-stats", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "synaptic operations per image" in out and "energy: SNN" in out
