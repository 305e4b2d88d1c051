"""scripts/gpu_check.py, the device command, on the strict CPU stand-in for CuPy
(``--standin``): its CPU-checkable steps pass in the planned order inside the budget, the
budget skips or stops a step and says so, bad input is one line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import load_script, write_test_batch

from icsnn_np.io.data import DATA_ENV, load_dataset

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check(args, prelude=""):
    """``scripts/gpu_check.py args`` in a subprocess, as CI runs it (no $ICSNN_DATA: the data
    folder is only what --data-dir names; no ICSNN_CUPY_STANDIN: --standin says it)."""
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, "ICSNN_CUPY_STANDIN")}
    cmd = ([sys.executable, "scripts/gpu_check.py"] if not prelude else
           [sys.executable, "-c", prelude + "; import runpy, sys; sys.argv[0] = "
            "'scripts/gpu_check.py'; runpy.run_path(sys.argv[0], run_name='__main__')"])
    return subprocess.run(cmd + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_gpu_check_runs_its_cpu_checkable_steps_on_the_standin(tmp_path):
    """The device command on the stand-in, small, with a data folder holding only
    test_batch.bin (built from the bundled slice in the official binary format): every step
    passes, in the planned order, each with its own limit inside the 9-minute budget; the
    test-batch demo reads the test batch alone, calibrates on the slice (and says so) and
    gives the slice demo's numbers; the stand-in demo gives numpy's; the benchmark (--quick)
    runs on the cupy path; no absolute path of this machine is in the outputs."""
    sl = load_dataset("cifar10-slice")
    data = tmp_path / "gpu_data"
    write_test_batch(data, sl.x_test, sl.y_test)
    assert [f.name for f in data.iterdir()] == ["test_batch.bin"]
    out = tmp_path / "out" / "gpu_check"
    p = _gpu_check(["--standin", "--skip-tests", "--data-dir", str(data), "--n-test", "20",
                    "--n-calib", "16", "--T", "4", "--out", str(out)])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["ok"] and res["device"].startswith("the CuPy stand-in")
    gc = load_script("gpu_check")
    assert gc.BUDGET_S == sum(gc.LIMITS.values()) <= 9 * 60 and res["budget"] == gc.BUDGET_S
    assert [(s["step"].split(",")[0].split(" (")[0], s["limit"]) for s in res["steps"]] == [
        ("demo", gc.LIMITS["pair"]), ("demo", gc.LIMITS["pair_numpy"]),
        ("demo", gc.LIMITS["test_batch"]), ("demo --backend cupy", gc.LIMITS["users"]),
        ("bench", gc.LIMITS["bench"])]                 # --skip-tests: no nested suite
    assert all(s["rc"] == 0 and 0 < s["seconds"] < s["limit"] for s in res["steps"]), res["steps"]
    gpu, cpu, batch, users, bench = res["steps"]
    assert gpu["json"]["backend"] == "cupy" and cpu["json"]["backend"] == "numpy"
    assert (gpu["json"]["ann_acc"], gpu["json"]["variants"]) == (cpu["json"]["ann_acc"],
                                                                 cpu["json"]["variants"])
    assert "--dataset cifar10 --data-dir $DATA --calib-from cifar10-slice" in batch["command"]
    assert batch["json"]["dataset"] == "cifar10" and batch["json"]["n_test"] == 20
    assert batch["json"]["images"]["calibration"] == "16 training images of cifar10-slice (seed 0)"
    assert "calibration: 16 training images of cifar10-slice" in batch["summary"]
    assert (batch["json"]["ann_acc"], batch["json"]["variants"]) == (users["json"]["ann_acc"],
                                                                     users["json"]["variants"])
    b = bench["bench"]
    assert b["machine"]["backend"] == "cupy" and b["machine"]["gpu"] == "CuPy stand-in (CPU)"
    assert b["snn"]["ours_rate"] > 0 and b["train"]["ours_rate"] > 0
    assert [r["T"] for r in b["T_scaling"]["rows"]] == [4, 8, 16]
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# GPU check") and "Machine: the CuPy stand-in" in md
    for text in (md, out.with_suffix(".json").read_text()):
        assert str(ROOT) not in text and str(tmp_path) not in text and sys.executable not in text


def test_gpu_check_budget_skips_or_stops_a_step_and_says_so(tmp_path):
    """Each step gets its limit or what is left of the budget; too little left: skipped (and
    the check is not ok); over its limit: stopped with rc "timeout"."""
    gc, log = load_script("gpu_check"), []
    py, env, now = sys.executable, dict(os.environ), time.perf_counter
    r = gc.run_step("late", [py, "-c", "pass"], 60, env, log.append, now() + 5)
    assert r["rc"] == "skipped" and r["seconds"] == 0 and log[-1].startswith("late: skipped")
    r = gc.run_step("clipped", [py, "-c", "print('{\"a\": 1}')"], 300, env, log.append, now() + 40)
    assert r["rc"] == 0 and 30 <= r["limit"] <= 40 and r["json"] == {"a": 1}
    t0 = now()
    r = gc.run_step("slow", [py, "-c", "import time; time.sleep(60)"], 1, env, log.append, now() + 99)
    assert r["rc"] == "timeout" and r["limit"] == 1 and now() - t0 < 30
    out = tmp_path / "gpu_check"
    p = _gpu_check(["--standin", "--budget", "5", "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    assert p.returncode == 1 and not res["ok"]
    assert {s["rc"] for s in res["steps"]} == {"skipped"} and len(res["steps"]) == 5
    assert "the 5 s budget was spent" in " ".join(res["notes"])
    assert "no CIFAR-10 test batch" in " ".join(res["notes"])


def test_gpu_check_bad_input_is_one_line(tmp_path):
    """No CuPy (an import that fails, whatever this machine has), or a --data-dir without the
    test batch: one line, exit code 2, nothing written."""
    out = tmp_path / "gpu_check"
    for prelude, args, msg in [
            ("import sys; sys.modules['cupy'] = None", [], "CuPy is not installed"),
            ("", ["--standin", "--data-dir", str(tmp_path)], "holds no CIFAR-10 test batch")]:
        p = _gpu_check(args + ["--out", str(out)], prelude)
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert not out.with_suffix(".json").exists()
