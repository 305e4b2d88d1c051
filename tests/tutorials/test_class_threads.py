"""Class mode chooses its own threads on a shared machine and prints the load beside its time.

``tutorials/_common.py``: one thread per usable core, never more than the cores the 1-minute
load average leaves free (at least one); a thread variable the user set wins; a one-line
note says what was chosen and how to override it; ``finish`` prints the load at start and
end beside the wall time.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
sys.path.insert(0, str(TUTORIALS))
import _common  # noqa: E402

CLEAN = {k: v for k, v in os.environ.items() if k not in _common.THREAD_VARS}


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.1, 2), (2, 0.6, 1), (2, 1.3, 1), (2, 3.7, 1), (2, None, 2), (8, 2.4, 6), (1, 0.0, 1)])
def test_one_thread_per_free_core_at_least_one(cores, load, expected):
    n, note = _common.choose_threads(cores, load, {})
    assert n == expected
    assert note.startswith(f"# threads: {n} ({cores} cores usable") and "ICSNN_NUM_THREADS=N" in note


@pytest.mark.parametrize("var", _common.THREAD_VARS)
def test_a_thread_variable_the_user_set_wins(var):
    n, note = _common.choose_threads(2, 0.0, {var: "1"})
    assert n is None and f"{var}=1" in note


def run_step(env, *args):
    proc = subprocess.run([sys.executable, str(TUTORIALS / "02_if_neuron.py"), *args],
                          cwd=ROOT, env={**env, "MPLBACKEND": "Agg"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_class_mode_says_what_it_chose_and_the_load_beside_its_time(tmp_path):
    out = run_step(CLEAN, "--class", "--out", str(tmp_path))
    m = re.search(r"^# threads: (\d+) \((\d+) cores usable", out, re.M)
    assert m and 1 <= int(m.group(1)) <= int(m.group(2)) == _common.usable_cores()
    assert re.search(r"^done in [\d.]+ s \(class mode\); machine load [\d.]+ -> [\d.]+ "
                     r"\(1-min average, \d+ cores\)$", out, re.M)


def test_class_mode_keeps_the_users_setting_and_other_modes_choose_nothing(tmp_path):
    out = run_step({**CLEAN, "ICSNN_NUM_THREADS": "1"}, "--class", "--out", str(tmp_path / "c"))
    assert "# threads: as set by ICSNN_NUM_THREADS=1" in out
    assert "# threads:" not in run_step(CLEAN, "--quick", "--out", str(tmp_path / "q"))


def test_the_choice_reaches_the_engine_and_the_blas():
    code = ("import sys; sys.path.insert(0, 'tutorials'); import _common, os\n"
            "from icsnn_np.fast.threads import num_workers\n"
            "from icsnn_np.fast.blas import openblas\n"
            "num_workers(); _common.apply_threads(1, 'x')\n"
            "lib = openblas()\n"
            "print(os.environ['ICSNN_NUM_THREADS'], num_workers(), lib.get_threads() if lib else 1)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=CLEAN, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "1", "1"]
