"""scripts/gpu_check.py run from outside the checkout: relative paths are the caller's (the
steps run in the checkout), nothing is written into the checkout unless named, a step's
outcome is read from its exit status, and ``--budget`` takes only a finite number > 0. The
steps themselves are replaced by a recorder here (test_gpu_check.py runs them for real)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script, write_test_batch

from icsnn_np.io.data import DATA_ENV

gc = load_script("gpu_check")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The caller's folder (not the checkout) holding data/test_batch.bin; every step is
    recorded and 'exits 0' without running or writing anything."""
    rng = np.random.default_rng(0)
    write_test_batch(tmp_path / "data", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8),
                     np.arange(4) % 10)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ENV, raising=False)
    ran = []

    def fake_step(name, cmd, limit, env, log, deadline):
        ran.append(cmd)
        return {"step": name, "command": " ".join(cmd), "json": None, "limit": limit, "rc": 0,
                "seconds": 0.1, "tail": ""}
    monkeypatch.setattr(gc, "run_step", fake_step)
    return tmp_path, ran


def test_relative_paths_are_the_callers_and_nothing_lands_in_the_checkout(elsewhere, capsys):
    here, ran = elsewhere
    before = {p for p in (ROOT / "runs").glob("*")} if (ROOT / "runs").exists() else set()
    gc.main(["--standin", "--skip-tests", "--data-dir", "data", "--out", "o/g"])
    data_args = [c[c.index("--data-dir") + 1] for c in ran if "--data-dir" in c]
    assert data_args == [str(here / "data")]
    bench = next(c for c in ran if "icsnn_np.bench" in c)
    assert bench[bench.index("--out") + 1] == str(here / "o" / "g_bench")
    assert (here / "o" / "g.json").is_file() and (here / "o" / "g.md").is_file()
    now = {p for p in (ROOT / "runs").glob("*")} if (ROOT / "runs").exists() else set()
    assert now == before and not (ROOT / "o").exists()


def test_a_step_that_exits_0_is_not_called_failed(elsewhere):
    here, _ = elsewhere
    gc.main(["--standin", "--skip-tests", "--data-dir", "data", "--out", "o/g"])
    steps = json.loads((here / "o" / "g.json").read_text())["steps"]
    bench = next(s for s in steps if s["step"].startswith("bench"))
    assert bench["summary"].startswith("passed (exit 0), but its results file")
    assert all(s["summary"].startswith("passed (exit 0)") for s in steps), steps
    assert not any("failed" in s["summary"] for s in steps)


def test_a_failed_step_is_named_with_its_exit_status_and_last_line():
    rec = {"rc": 3, "tail": "working\nerror: no such thing\n", "summary": ""}
    assert gc.outcome(rec) == "failed (exit 3): error: no such thing"
    assert gc.outcome(dict(rec, rc="timeout", tail="x\nstopped after 9 s")).startswith(
        "stopped at its time limit")


@pytest.mark.parametrize("budget", ["nan", "-5", "0", "inf", "-inf", "soon"])
def test_budget_refuses_nan_negatives_zero_and_infinity(budget, capsys):
    assert gc.main(["--standin", "--skip-tests", "--budget", budget]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget" in err[0]
