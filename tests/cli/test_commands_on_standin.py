"""The commands (demo, ``--stats``, reproduce, train) with ``--backend cupy`` on the strict CPU
stand-in for CuPy (icsnn_np.testing.cupy_standin, plugged in from outside) give
NumPy's numbers. (The stand-in's own rules: tests/testing/test_standin.py.)
"""
from __future__ import annotations

import json

import numpy as np
import pytest


def both(main, argv, monkeypatch, capsys, stream="out"):
    """Run a CLI with --backend numpy and --backend cupy (the stand-in): both stdouts (or,
    ``stream="err"``, both stderrs: where progress goes)."""
    from icsnn_np.testing.plug import standin
    outs = []
    for be in ("numpy", "cupy"):
        with standin():
            rc = main(argv(be) if callable(argv) else argv + ["--backend", be])
        out = capsys.readouterr()
        assert rc == 0, out.err
        outs.append(getattr(out, stream))
    return outs


def test_demo_and_stats_on_the_standin_give_numpys_numbers(monkeypatch, capsys):
    from icsnn_np.cli import demo
    a, b = (json.loads(o) for o in both(demo.main, [
        "--T", "4", "--n-test", "20", "--n-calib", "16", "--batch-size", "20", "--variants",
        "snn", "ic-snn", "--stats", "--n-stats", "8", "--json"], monkeypatch, capsys))
    assert (a["backend"], b["backend"]) == ("numpy", "cupy")
    assert b["ann_acc"] == a["ann_acc"] and b["variants"] == a["variants"]
    assert json.dumps(b["stats"]) == json.dumps(a["stats"])


def test_reproduce_on_the_standin_gives_numpys_table(tmp_path, monkeypatch, capsys):
    from icsnn_np.cli import reproduce
    both(reproduce.main, lambda be: [
        "--checkpoint", "vgg_cpu", "--dataset", "cifar10-slice", "--n-test", "20", "--n-calib",
        "16", "--T", "4", "--reading-T", "4", "--rows", "0", "3", "--batch-size", "20",
        "--out", str(tmp_path / be), "--backend", be], monkeypatch, capsys)
    a, b = (json.loads((tmp_path / f"{be}.json").read_text()) for be in ("numpy", "cupy"))
    assert b["settings"]["backend"] == "cupy"
    assert b["ann_acc"] == a["ann_acc"] and b["rows"] == a["rows"]


def test_train_on_the_standin_follows_numpy(tmp_path, monkeypatch, capsys):
    """One short epoch on the slice (tested on 200 of its test images): the same accuracies,
    and the weights and loss to float32 rounding (the GPU path sums the batch in one GEMM,
    the CPU path by blocks and threads)."""
    from dataclasses import replace

    from icsnn_np.cli import train
    from icsnn_np.runs import training
    load = training.load_dataset
    monkeypatch.setattr(training, "load_dataset", lambda *a, **k: (lambda d: replace(
        d, x_test=d.x_test[:200], y_test=d.y_test[:200]))(load(*a, **k)))
    lines = both(train.main, lambda be: [
        "--dataset", "cifar10-slice", "--model", "vgg_cpu", "--epochs", "1", "--train-limit",
        "64", "--batch-size", "32", "--lr", "0.02", "--out", str(tmp_path / f"{be}.npz"),
        "--backend", be], monkeypatch, capsys, stream="err")
    epoch = [next(ln for ln in out.splitlines() if ln.startswith("epoch")).split() for out in lines]
    loss = [float(e[e.index("loss") + 1]) for e in epoch]
    assert loss[1] == pytest.approx(loss[0], rel=1e-3)
    for key in ("train", "test"):
        assert epoch[1][epoch[1].index(key) + 1] == epoch[0][epoch[0].index(key) + 1]
    with np.load(tmp_path / "numpy.npz") as a, np.load(tmp_path / "cupy.npz") as b:
        assert a.files == b.files
        for k in a.files:
            if a[k].dtype.kind == "f":
                np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-5, err_msg=k)
