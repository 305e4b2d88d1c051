"""The strict CPU stand-in for CuPy (icsnn_np.testing.cupy_standin) and what it proves about
the GPU path on every CI run: its rules (CuPy's refusals, counted transfers), that one
``simulate()`` makes a number of device -> host transfers that does not grow with T or the
number of time chunks, that it catches a host conversion or a host array planted in the
simulation loop, and that the CLIs (demo, ``--stats``, reproduce, train, bench) and
``scripts/gpu_check.py --standin`` run with ``--backend cupy`` and give NumPy's numbers.

The backend-parametrised tests of every module run on the stand-in through the ``xp``
fixture (conftest.py); this file holds what is about the stand-in itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import MEAN, STD, converted_on, load_script, make_v0, run_sim, write_test_batch

from icsnn_np import backend
from icsnn_np.backend import get_xp, to_device, to_host, xp_of
from icsnn_np.io.data import DATA_ENV, load_dataset
from icsnn_np.neurons import IFNode
from icsnn_np.runs.engine import ENGINES
from icsnn_np.simulate import simulate
from icsnn_np.testing import cupy_standin

cp = cupy_standin
backend.use_standin(cp)
T_ = cp.TRANSFERS
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the rules
def test_device_arrays_refuse_implicit_conversion_to_numpy():
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    for bad in (lambda: np.asarray(a), lambda: np.array(a), lambda: np.mean(a),
                lambda: np.concatenate([a, a]), lambda: np.maximum(a, 0), lambda: np.add(a, 1),
                lambda: float(a), lambda: int(a[0]), lambda: a.data, lambda: a.tobytes(),
                lambda: a.flat):
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(ValueError, match="truth value"):           # as CuPy and NumPy
        bool(a > 1)
    assert (np.ndim(a), np.shape(a), np.size(a)) == (2, (2, 3), 6)   # metadata reads no data
    assert np.result_type(a, np.float32) == np.float64


def test_host_arrays_cannot_be_mixed_in():
    a = cp.zeros((2, 3))
    host = np.ones((2, 3))
    for bad in (lambda: a + host, lambda: host + a, lambda: a * np.float64(2) + np.array(1.0),
                lambda: cp.add(a, host), lambda: cp.maximum(a, np.array(0.0)),
                lambda: cp.multiply(a, 2, out=host), lambda: a.__setitem__(Ellipsis, host),
                lambda: a[np.array([0, 1])], lambda: cp.asarray([a, host]), lambda: a @ host.T):
        with pytest.raises(TypeError, match="cupy stand-in"):
            bad()
    a[...] = np.array(2.0)                       # CuPy fills with a 0-d host value
    b = a + np.float32(1) - 3                    # NumPy and Python scalars are fine
    assert xp_of(b) is cp and to_host(b).tolist() == [[0.0] * 3] * 2
    assert to_host(a == np.array(2.0)).all()     # CuPy compares with a 0-d host value


def test_transfers_are_counted_with_their_place():
    T_.reset()
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert (T_.to_host, T_.to_device) == (0, 1)
    s = a.sum()                                                 # a 0-d device array
    assert xp_of(s) is cp and s.shape == ()
    assert float(s) == 15.0 and int(a[1, 2]) == 5 and bool(s > 1) and s.item() == 15.0
    assert a.tolist()[1] == [3.0, 4.0, 5.0] and to_host(a).shape == (2, 3) and a.get()[0, 0] == 0
    assert f"{s:.1f}" == "15.0" and "15" in str(s)
    assert T_.to_host == 9
    m = a > 2
    a[m] = 0.0                                   # a boolean mask: CuPy reads its count back
    assert xp_of(a[m]) is cp and T_.to_host == 11
    cp.nonzero(a)
    cp.copyto(a, 1.0, where=m)                   # what the package uses instead: no transfer
    assert T_.to_host == 12
    assert "test_standin.py" in T_.report() and "boolean-mask assignment" in T_.report()


def test_results_stay_on_the_device_and_copies_are_copies():
    a = cp.asarray(np.arange(4.0))
    for r in (a.max(), a[2], cp.array_equal(a, a), cp.allclose(a, a), cp.count_nonzero(a),
              next(iter(a)), cp.random.default_rng(0).random(3), cp.linalg.norm(a)):
        assert xp_of(r) is cp
    b = cp.array(a)                              # cupy.array copies a device array
    b[0] = 9.0
    assert float(a[0]) == 0.0
    assert cp.asarray(a) is a and cp.asarray(a, dtype=np.float32).dtype == np.float32
    stacked = cp.asarray([a, a])                 # a list of device arrays stays on the device
    assert xp_of(stacked) is cp and stacked.shape == (2, 4)
    assert cp.get_array_module(a) is cp and cp.get_array_module(np.ones(1)) is np


def test_the_environment_variable_plugs_the_standin_into_the_commands(monkeypatch):
    """The core never imports the testing aids: the command lines plug the stand-in in when
    ICSNN_CUPY_STANDIN=1, and unplugged, --backend cupy means CuPy again."""
    from icsnn_np.cli import common
    backend.use_standin(None)
    try:
        monkeypatch.setenv(common.STANDIN_ENV, "0")
        common.plug_standin()
        if not backend.cupy_available():
            with pytest.raises(backend.BackendError):
                get_xp("cupy")
        monkeypatch.setenv(common.STANDIN_ENV, "1")
        common.plug_standin()
        assert get_xp("cupy") is cp and backend.backend_name(cp) == "cupy"
    finally:
        backend.use_standin(cp)


# --------------------------------------------------------------------------- syncs bounded
SYNC_FLAGS = [{}, {"count": True}, {"record": True}, {"keep_v": True}]


@pytest.mark.parametrize("flags", SYNC_FLAGS, ids=["plain", "count", "record", "keep_v"])
@pytest.mark.parametrize("engine", ENGINES)
def test_simulate_syncs_do_not_grow_with_T_or_chunks(engine, flags):
    """One simulate() call: the device -> host transfers (each a sync on a GPU) are the same
    for T = 4, 16, 64 and chunks of 1, 4, 16 steps (the fast engine), with channel-wise
    thresholds and per-channel v(0) on the device: a few per call, per IF node at most."""
    net, snn, x = converted_on(cp, "vgg", channelwise=True)
    shapes = [tuple(r["v_T"].shape[1:]) for r in simulate(snn, x, 1, keep_v=True).layers]
    snn.set_v0([to_device(v, cp) for v in make_v0(snn, shapes, "channel")])
    run_sim(snn, x, 1, engine=engine, **flags)           # the first call also probes layer sizes
    counts = {}
    for T in (4, 16, 64):
        for chunk in ((1, 4, 16) if engine == "fast" else (None,)):
            T_.reset()
            run_sim(snn, x, T, engine=engine, chunk=chunk, **flags)
            counts[T, chunk] = T_.to_host
    assert len(set(counts.values())) == 1, f"{counts}; last call: {T_.report()}"
    # the input check (twice on the reference engine: the runner's, then the core simulate's);
    # per node V_th and v(0) checked at the reset; the spike totals in one transfer; per node
    # v(T) (keep_v), and counts, first spikes and V_th too (record)
    n = len(snn.nodes)
    per_call = (1 + (engine == "reference") + 2 * n + ("count" in flags or "record" in flags)
                + n * (("keep_v" in flags) + 4 * ("record" in flags)))
    assert set(counts.values()) == {per_call}, T_.report()


def test_rate_coding_copies_its_draws_to_the_device_without_syncs():
    net, snn, x = converted_on(cp, "resnet")
    kw = dict(coding="rate", mean=MEAN, std=STD, count=True, engine="fast", chunk=4)
    run_sim(snn, x, 4, **kw)                    # the first call also copies constants over
    to_host_, to_dev = {}, {}
    for T in (4, 16):
        T_.reset()
        run_sim(snn, x, T, **kw)
        to_host_[T], to_dev[T] = T_.to_host, T_.to_device
    assert to_host_[4] == to_host_[16]
    # the host RNG's draws: one copy per step (and the normalisation per chunk of 4)
    assert to_dev[16] - to_dev[4] == 12 + 2 * 3


# --------------------------------------------------------------------------- planted errors
def test_a_host_conversion_planted_in_the_step_loop_is_caught(monkeypatch):
    """np.asarray(device array) inside the time loop: TypeError on the stand-in (and on
    CuPy), where NumPy would run it silently."""
    forward = IFNode.forward

    def planted(self, current):
        np.asarray(current)
        return forward(self, current)

    monkeypatch.setattr(IFNode, "forward", planted)
    net, snn, x = converted_on(cp, "vgg")
    with pytest.raises(TypeError, match="implicit conversion of a device array"):
        simulate(snn, x, 3)
    net, snn, x = converted_on(np, "vgg")
    simulate(snn, x, 3)                          # NumPy does not notice


def test_a_host_array_planted_in_the_step_loop_is_caught(monkeypatch):
    forward = IFNode.forward

    def planted(self, current):
        return forward(self, current + np.zeros(current.shape))
    monkeypatch.setattr(IFNode, "forward", planted)
    net, snn, x = converted_on(cp, "vgg")
    with pytest.raises(TypeError, match="host .NumPy. array in `__add__`"):
        simulate(snn, x, 3)


# --------------------------------------------------------------------------- the CLIs
def both(main, argv, monkeypatch, capsys, stream="out"):
    """Run a CLI with --backend numpy and --backend cupy (the stand-in): both stdouts (or,
    ``stream="err"``, both stderrs: where progress goes)."""
    monkeypatch.setenv("ICSNN_CUPY_STANDIN", "1")
    outs = []
    for be in ("numpy", "cupy"):
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


# --------------------------------------------------------------------------- the GPU check
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
