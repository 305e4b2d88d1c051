"""runs/export.py and ``demo --export-snn``: the exported file is the SNN the project ran (its
reload reproduces the project's predictions, NumPy only), PyTorch running the file counts the
project's spikes (scripts/run_exported_snn_torch.py, where torch is installed), and an
ambiguous choice is refused in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from icsnn_np.cli import demo
from icsnn_np.io.data import load_dataset
from icsnn_np.io.preprocess import normalize
from icsnn_np.runs.export import load_exported
from icsnn_np.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "snn.npz"
    rc = demo.main(["--variants", "ic-snn", "--T", "4", "--n-test", "20", "--n-calib", "32",
                    "--export-snn", str(path), "--json"])
    assert rc == 0 and path.is_file()
    return path


def test_the_file_holds_the_schema_of_docs_export(exported):
    snn, meta = load_exported(exported)
    with np.load(exported) as f:
        names = set(f.files)
    assert meta["format"] == "icsnn-np-snn" and meta["T"] == 4 and meta["variant"] == "ic-snn"
    assert meta["neuron"]["reset"].startswith("subtraction") and meta["coding"]["kind"] == "direct"
    assert [op["op"] for op in meta["layers"]].count("if") == len(snn.nodes) == len(meta["nodes"])
    assert {f"v_th/{n}" for n in meta["nodes"]} | {f"v0/{n}" for n in meta["nodes"]} <= names
    assert any(float(np.max(np.abs(n.v0))) > 0 for n in snn.nodes)       # IC-SNN's v(0), not 0
    assert meta["provenance"]["version"] and "demo" in meta["provenance"]["command"]


def test_reloading_the_file_reproduces_the_projects_predictions(exported, capsys):
    """The demo's accuracy on its 20 images, and the reloaded SNN's, image for image."""
    snn, meta = load_exported(exported)
    ds = load_dataset("cifar10-slice")
    x = normalize(ds.x_test[:20], meta["coding"]["mean"], meta["coding"]["std"])
    pred = simulate(snn, x, meta["T"]).output.argmax(1)
    rc = demo.main(["--variants", "ic-snn", "--T", "4", "--n-test", "20", "--n-calib", "32", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert res["variants"]["ic-snn"]["4"]["acc"] == pytest.approx(100 * float((pred == ds.y_test[:20]).mean()))


def test_pytorch_counts_the_projects_spikes(exported):
    pytest.importorskip("torch", reason="PyTorch not installed: the cross-check is skipped")
    snn, meta = load_exported(exported)
    ds = load_dataset("cifar10-slice")
    snn.ann.to(np, np.float64)
    x = normalize(ds.x_test[:20], meta["coding"]["mean"], meta["coding"]["std"]).astype(np.float64)
    res = simulate(snn, x, meta["T"], record=True)
    proc = subprocess.run([sys.executable, "scripts/run_exported_snn_torch.py", str(exported), "--n",
                           "20", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    torch_spikes = json.loads(proc.stdout)["spikes"]
    for node, rec in zip(snn.nodes, res.layers):
        np.testing.assert_array_equal(np.asarray(torch_spikes[node.name]), rec["spike_count"].sum(0))


def test_the_runner_script_is_short_and_needs_no_icsnn_np():
    text = (ROOT / "scripts" / "run_exported_snn_torch.py").read_text()
    assert len(text.splitlines()) <= 40 and "icsnn_np import" not in text and "import icsnn_np" not in text


@pytest.mark.parametrize("argv, msg", [
    (["--variants", "snn", "ic-snn", "--T", "4"], "--export-snn writes one SNN: name one variant and one T"),
    (["--variants", "ic-snn", "--T", "4", "8"], "--export-snn writes one SNN"),
    (["--variants", "cos", "--T", "4"], "cos runs more than an IF network"),
])
def test_an_ambiguous_or_unexportable_choice_is_one_line(argv, msg, tmp_path, capsys):
    rc = demo.main(argv + ["--n-test", "5", "--n-calib", "8", "--export-snn", str(tmp_path / "s.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and msg in err[-1] and not (tmp_path / "s.npz").exists()
