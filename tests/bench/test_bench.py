"""Smoke test of ``python -m icsnn_np.bench --quick``: it runs, and writes JSON and a table;
without ``--out`` a quick run writes to a temporary folder, never into results/.

No timing is asserted: numbers depend on the machine and its load.
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from icsnn_np.bench import __main__ as bench_cli


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick benchmark run for this file: (its JSON results, the folder it wrote to, stdout)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    mp = pytest.MonkeyPatch()
    lines = []
    mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        assert bench_cli.main(["--quick", "--out", str(out), "--repeats", "1"]) == 0
    finally:
        mp.undo()
    return json.loads(out.read_text()), out.parent, "\n".join(lines)


def test_quick_bench_writes_json_and_table(quick):
    res, folder, printed = quick
    assert {"snn", "gemm", "train", "T_scaling", "targets", "machine"} <= set(res)
    assert res["config"]["quick"] is True
    assert res["snn"]["ours_rate"] > 0 and res["train"]["ours_rate"] > 0
    assert res["snn"]["reference_rate"] > 0 and 0 <= res["snn"]["reference_agreement"] <= 1
    assert [r["T"] for r in res["T_scaling"]["rows"]] == [4, 8, 16]
    assert all(r["peak_bytes"] > 0 for r in res["T_scaling"]["rows"])
    assert res["gemm"]["conv_layers"] and res["gemm"]["matmul_gflops"] > 0
    assert any(res["snn"]["firing_rate_per_layer"])          # the network does spike
    if res["machine"]["torch"]:
        assert "torch_rate" in res["snn"] and "torch_rate" in res["train"]
    md = (folder / "bench.md").read_text()
    assert "SNN inference" in md and "| target |" in md
    assert "SNN inference" in printed


def test_quick_bench_alternates_and_reports_medians(quick):
    """Both timed parts alternate ours with PyTorch (where installed); rates and ratios come
    from the medians; the machine record names the caches and the engine's threads."""
    res, folder, _ = quick
    torch = bool(res["machine"]["torch"])
    for part, order, n in (("snn", ["ours", "im2col"] + ["torch"] * torch,
                            res["snn"]["batch"] * res["snn"]["T"]),
                           ("train", ["ours"] + ["torch"] * torch, res["train"]["batch"])):
        r = res[part]
        assert r["order"] == order and r["timing"] == ("alternating" if len(order) > 1 else "in a row")
        for side in ["ours"] + ["torch"] * torch:
            s = r[f"{side}_s"]
            assert len(s["all"]) == r["repeats"] == 1 and s["min"] <= s["median"] <= s["max"]
            assert r[f"{side}_rate"] == pytest.approx(n / s["median"])
            assert r[f"{side}_rate_range"] == pytest.approx([n / s["max"], n / s["min"]])
        if torch:
            assert r["ratio"] == pytest.approx(r["torch_s"]["median"] / r["ours_s"]["median"])
    if torch:
        assert "rounds of alternating calls (fast engine, fast engine with im2col convs, PyTorch)" \
            in (folder / "bench.md").read_text()
    m = res["machine"]
    assert set(m["caches"]) == {"L1d", "L2", "L3"} and m["engine_threads"] >= 1
    assert m["load_avg_after"] is None or len(m["load_avg_after"]) == 3
    g = res["gemm"]
    assert all(layer["fraction_of_matmul"] == pytest.approx(layer["gflops"] / g["matmul_gflops"])
               for layer in g["conv_layers"])


def test_quick_without_out_writes_to_a_temporary_folder(quick, tmp_path, monkeypatch, capsys):
    """``--quick`` alone must not overwrite the committed results/bench.json."""
    res, _, _ = quick
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench_cli, "run", lambda cfg, only, log: res)   # the measured numbers
    assert bench_cli.main(["--quick"]) == 0
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()
    wrote = capsys.readouterr().err.strip().splitlines()[-1]     # notes and progress: stderr
    json_path = Path(wrote.split()[1])
    try:
        assert json_path.is_file() and json_path.name == "bench.json"
        assert json_path.parent.parent == Path(tempfile.gettempdir())
        assert json_path.parent.name.startswith("icsnn_bench_")
        assert json.loads(json_path.read_text())["snn"] == res["snn"]
    finally:
        if json_path.parent.name.startswith("icsnn_bench_"):
            shutil.rmtree(json_path.parent)


def test_torch_is_not_imported_by_the_package():
    # the bench imports torch inside its functions only; importing the package must not
    code = ("import sys, icsnn_np.bench, icsnn_np.bench.__main__, icsnn_np.simulate, "
            "icsnn_np.runs.training, icsnn_np.fast.engine; print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize("name, widths", [("vgg_bench", [64, 128, 256]), ("vgg_cpu", [32, 64, 128])])
def test_the_benchmark_network_is_built_by_the_bench_not_the_core(name, widths):
    """vgg_bench (vgg_cpu's layout at twice its widths) lives in bench/, not in the core's models."""
    from icsnn_np.bench.parts import bench_model
    from icsnn_np.models import MODELS
    from icsnn_np.layers import Conv2d
    convs = [m.out_channels for _, m in bench_model(name).named_modules() if isinstance(m, Conv2d)]
    assert sorted(set(convs)) == widths and "vgg_bench" not in MODELS
