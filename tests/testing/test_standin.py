"""The strict CPU stand-in for CuPy (icsnn_np.testing.cupy_standin) and what it proves about
the GPU path on every CI run: its rules (CuPy's refusals, counted transfers), that one
``simulate()`` makes a number of device -> host transfers that does not grow with T or the
number of time chunks, and that it catches a host conversion or a host array planted in the
simulation loop. (The CLIs on the stand-in: tests/cli/test_commands_on_standin.py;
``scripts/gpu_check.py --standin``: tests/scripts/test_gpu_check.py.)

The backend-parametrised tests of every module run on the stand-in through the ``xp``
fixture (conftest.py); this file holds what is about the stand-in itself.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import MEAN, STD, converted_on, make_v0, run_sim

from icsnn_np.beyond.thresholds import channel_threshold
from icsnn_np import backend
from icsnn_np.backend import get_xp, to_device, to_host, xp_of
from icsnn_np.neurons import IFNode
from icsnn_np.runs.engine import ENGINES
from icsnn_np.simulate import simulate
from icsnn_np.testing import cupy_standin
from icsnn_np.testing.plug import plug_standin, unplug_standin

cp = cupy_standin
T_ = cp.TRANSFERS


@pytest.fixture(autouse=True, scope="module")
def plugged():
    """The stand-in plugged into the backend for this module's tests, the backend's state
    restored after (a stand-in left plugged would mask CuPy in the GPU rows elsewhere)."""
    saved = backend.cupy, backend.cupy_error
    plug_standin()
    yield
    backend.cupy, backend.cupy_error = saved


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


def test_the_standin_is_plugged_from_outside_and_unplugged_means_cupy_again():
    """The core never imports the testing aids: ``testing.plug`` puts the stand-in into the
    backend, and unplugged, --backend cupy means CuPy again."""
    unplug_standin()
    try:
        if not (backend.load_cupy() is not None):
            with pytest.raises(backend.BackendError):
                get_xp("cupy")
        plug_standin()
        assert get_xp("cupy") is cp and backend.backend_name(cp) == "cupy"
    finally:
        plug_standin()


def test_the_wrapper_runs_a_command_on_the_standin():
    """``python -m icsnn_np.testing.run icsnn_np.demo --backend cupy`` runs the demo on the
    stand-in (what scripts/gpu_check.py --standin runs), the command knowing nothing of it."""
    import subprocess
    import sys
    from pathlib import Path
    proc = subprocess.run([sys.executable, "-m", "icsnn_np.testing.run", "icsnn_np.demo",
                           "--backend", "cupy", "--T", "2", "--n-test", "10", "--n-calib", "8",
                           "--variants", "snn", "--json"], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '"backend": "cupy"' in proc.stdout


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
    # (and one more: collect's check that no potential overflowed, one bool for all nodes)
    per_call = (2 + (engine == "reference") + 2 * n + ("count" in flags or "record" in flags)
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
    # per step: the host RNG's draw and the normalisation's mean and std (rate_encode codes
    # one step at a time, on either engine), copies only, no sync
    assert to_dev[16] - to_dev[4] == 3 * 12


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
