"""Smoke test of ``python -m icsnn_np.bench --quick``: it runs, and writes JSON and a table.

No timing is asserted: numbers depend on the machine and its load.
"""
import json
import sys

from icsnn_np import bench


def test_quick_bench_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--out", str(out), "--repeats", "1"]) == 0
    res = json.loads(out.read_text())
    assert {"snn", "gemm", "train", "T_scaling", "targets", "machine"} <= set(res)
    assert res["snn"]["ours_rate"] > 0 and res["train"]["ours_rate"] > 0
    assert [r["T"] for r in res["T_scaling"]["rows"]] == [4, 8, 16]
    assert all(r["peak_bytes"] > 0 for r in res["T_scaling"]["rows"])
    assert res["gemm"]["conv_layers"] and res["gemm"]["matmul_gflops"] > 0
    assert any(res["snn"]["firing_rate_per_layer"])          # the network does spike
    if res["machine"]["torch"]:
        assert "torch_rate" in res["snn"] and "torch_rate" in res["train"]
    md = (tmp_path / "bench.md").read_text()
    assert "SNN inference" in md and "| target |" in md
    assert "SNN inference" in capsys.readouterr().out


def test_torch_is_not_imported_by_the_package():
    # the bench imports torch inside its functions only; importing the package must not
    import subprocess
    code = ("import sys, icsnn_np.bench, icsnn_np.simulate, icsnn_np.train; "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
