"""beyond/: the training-free family beside IC-SNN, held to laws that hold exactly.

* the pre-run (``simulate_prerun``, both engines, tested equal): an identity rule gives the
  plain simulation for any rho, a continuing rule gives a run of rho + T steps, and a run
  never takes more than rho + T steps (counted by the progress tracker);
* COS moves v(0) by exactly -V_th, 0 or +V_th, where the pre-run's residual potential says
  one spike too many or too few, and a shift of V_th changes a spike count by one;
* SRP silences exactly the neurons whose residual potential is at or below zero;
* SNN Calibration leaves the ANN's weights bit-identical, leaves each layer with the error
  Eq. 11 predicts (mean change of v(T) / T), and reduces the mean output error layer by layer;
* the MSE threshold search returns a candidate no other candidate, nor the p-quantile, beats.

(The comparison of these methods, cli/compare.py: tests/cli/test_compare.py.)

Tiny networks from helpers.py, float64: the whole file runs in seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import MEAN, STD, converted, images, run_sim, tiny_vgg
from hypothesis import given, settings
from hypothesis import strategies as st

from icsnn_np.beyond.thresholds import channel_threshold
from icsnn_np.backend import to_device, to_host
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.beyond.calibration import (StepCurrent, layer_errors, snn_calibration,
                                         snn_calibration_advanced, snn_calibration_v0,
                                         with_currents)
from icsnn_np.beyond.methods import METHOD_VARIANTS, METHODS
from icsnn_np.beyond.prerun import (PreRun, cos_prerun, cos_rule, simulate_cos_layerwise,
                                    simulate_prerun, srp_prerun, srp_rule)
from icsnn_np.beyond.quantised import Quantiser, quantised_ann
from icsnn_np.beyond.thresholds import (Thresholds, clip_floor, mse_threshold, mse_thresholds,
                                        quantisation_error)
from icsnn_np.neurons import IFNode
from icsnn_np.runs.engine import ENGINES, simulator, use_engine
from icsnn_np.runs.evaluate import ConversionConfig, calibrate, evaluate_conversion
from icsnn_np.runs.progress import tracking
from icsnn_np.simulate import simulate

NETS = ("vgg", "resnet", "block_first")


def half(snn):
    snn.set_v0([n.v_th / 2 for n in snn.nodes])


def keep(rule, store):
    """``rule``, remembering per node the state it saw and what it returned."""
    def wrapped(v, count, v0, v_th):
        out = rule(v, count, v0, v_th)
        store.append(dict(v=v.copy(), count=count.copy(), v0=np.asarray(v0),
                          th=float(np.max(v_th)), v_start=out[0], gate=out[1]))
        return out
    return wrapped


def same_run(a, b, atol=1e-11):
    for ra, rb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(ra["spike_count"], rb["spike_count"])
        np.testing.assert_allclose(ra["v_T"], rb["v_T"], rtol=0, atol=atol)
    np.testing.assert_allclose(to_host(a.output), to_host(b.output), rtol=0, atol=atol)


# --------------------------------------------------------------------------- the pre-run
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", NETS)
def test_a_prerun_that_restarts_at_v0_changes_nothing(name, engine):
    """Direct coding feeds the same input at every step: restarting from v(0) after any
    pre-run gives the plain simulation, spike for spike."""
    _, snn, x = converted(name, seed=3)
    half(snn)
    plain = run_sim(snn, x, 5, record=True, engine=engine, chunk=2)
    for rho in (0, 1, 3):
        pre = run_sim(snn, x, 5, record=True, engine=engine, chunk=2,
                       prerun=PreRun(rho, lambda *state: (None, None)))
        same_run(pre, plain)
        assert pre.prerun == rho and pre.steps == rho + 5


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("coding", ["direct", "rate"])
@pytest.mark.parametrize("name", NETS)
def test_a_prerun_that_continues_is_one_longer_run(name, coding, engine):
    """Restarting every node from its own v(rho) continues the run: rho + T counted the same
    as one plain run of rho + T steps (spikes split between pre-run and counted steps). Rate
    coding replays its draws from step 1 after the pre-run (as COS's code replays its input):
    the same as the pre-run, then a plain run of T steps from v(rho)."""
    _, snn, x = converted(name, seed=5)
    kw = dict(coding=coding, mean=MEAN, std=STD, seed=4, engine=engine, chunk=3)
    rho, T = 3, 4
    if coding == "direct":
        long = run_sim(snn, x, rho + T, record=True, **kw)
    else:
        pre = run_sim(snn, x, rho, record=True, **kw)
        v0 = [n.v0 for n in snn.nodes]
        snn.set_v0([r["v_T"] for r in pre.layers])                  # per image and neuron
        long = run_sim(snn, x, T, record=True, **kw)
        snn.set_v0(v0)
        for r, p in zip(long.layers, pre.layers):
            r["spike_count"] = r["spike_count"] + p["spike_count"]
    split = run_sim(snn, x, T, record=True, prerun=PreRun(rho, lambda v, *rest: (v.copy(), None)), **kw)
    np.testing.assert_array_equal(
        [sum(r["spike_count"].sum() for r in long.layers)],
        [sum(split.spikes) + sum(split.prerun_spikes)])
    for a, b in zip(long.layers, split.layers):
        np.testing.assert_allclose(a["v_T"], b["v_T"], rtol=0, atol=1e-11)
    assert sum(split.prerun_spikes) > 0 and split.steps == rho + T


@settings(max_examples=10)
@given(name=st.sampled_from(NETS), seed=st.integers(0, 10**6), T=st.integers(1, 7),
       rho=st.integers(0, 5), chunk=st.integers(1, 4), method=st.sampled_from(["cos", "srp"]),
       coding=st.sampled_from(["direct", "rate"]))
def test_fast_engine_runs_the_prerun_methods_as_the_reference(name, seed, T, rho, chunk, method,
                                                              coding):
    _, snn, x = converted(name, seed=seed % 1000)
    half(snn)
    pre = (cos_prerun if method == "cos" else srp_prerun)(rho)
    kw = dict(coding=coding, record=True, mean=MEAN, std=STD, seed=seed, prerun=pre)
    ref = run_sim(snn, x, T, **kw)
    fast = run_sim(snn, x, T, engine="fast", chunk=chunk, **kw)
    same_run(fast, ref)
    for r, f in zip(ref.layers, fast.layers):
        np.testing.assert_array_equal(f["first_spike"], r["first_spike"])
    assert fast.prerun_spikes == ref.prerun_spikes


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", ["cos", "srp"])
def test_a_prerun_method_never_runs_more_than_rho_plus_T_steps(method, engine):
    """Every step the network runs is counted: rho + T per image, and no more."""
    _, snn, x = converted("vgg", seed=1)
    half(snn)
    rho, T = 3, 5
    with tracking(1, lambda s: None) as done:
        res = run_sim(snn, x, T, count=True, engine=engine, chunk=2,
                       prerun=(cos_prerun if method == "cos" else srp_prerun)(rho))
    assert done.done == len(x) * (rho + T) and res.steps == rho + T
    n = len(x) * res.steps * sum(res.neurons)
    assert res.firing_rate() == pytest.approx((sum(res.spikes) + sum(res.prerun_spikes)) / n)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", ["cos", "srp"])
def test_the_prerun_methods_run_on_every_backend(xp, method, engine):
    """COS and SRP on the device (and the strict CuPy stand-in) give NumPy's spikes."""
    net, snn, x = converted("resnet", seed=2)
    half(snn)
    kw = dict(engine=engine, chunk=3, record=True,
              prerun=(cos_prerun if method == "cos" else srp_prerun)(2))
    expect = run_sim(snn, x, 5, **kw)
    v0 = [n.v0 for n in snn.nodes]
    net.to(xp)
    snn.set_v0([to_device(np.asarray(v), xp) for v in v0])
    try:
        got = run_sim(snn, to_device(x, xp), 5, **kw)
    finally:
        net.to(np)
        snn.set_v0(v0)
    np.testing.assert_allclose(to_host(got.output), to_host(expect.output), rtol=1e-9, atol=1e-9)
    for a, b in zip(got.layers, expect.layers):
        np.testing.assert_array_equal(a["spike_count"], b["spike_count"])
    assert got.prerun_spikes == expect.prerun_spikes


# --------------------------------------------------------------------------- COS layer by layer
def spy(store):
    """A ``sim`` that remembers each call's v(0) list before running the core simulate."""
    def sim(snn, x, T, **kw):
        store.append([n.v0 for n in snn.nodes])
        return simulate(snn, x, T, **kw)
    return sim


@pytest.mark.parametrize("name", NETS)
def test_cos_layer_by_layer_calibrates_each_layer_on_the_calibrated_layers_below(name):
    """Each layer's v(0) is cos_rule on its state after rho steps of the network whose lower
    layers already start from their COS v(0); the first layer's is whole-network COS's."""
    _, snn, x = converted(name, seed=7, n=6)
    half(snn)
    rho, calls = 3, []
    snn.engine = spy(calls)
    simulate_cos_layerwise(snn, x, 4, rho)
    L = len(snn.nodes)
    assert len(calls) == L + 1 and [n.v0 for n in snn.nodes] == calls[0]          # v(0) restored
    starts = calls[-1]                                               # the replay's v(0)
    for i in range(L):
        snn.set_v0(calls[i])                                         # layers < i chosen
        assert all(np.array_equal(np.asarray(calls[i][k]), np.asarray(starts[k])) for k in range(i))
        st = simulate(snn, x, rho, record=True).layers[i]
        shape = st["v_T"].shape
        want = cos_rule(st["v_T"], st["spike_count"], np.broadcast_to(host_(snn.nodes[i].v0), shape),
                        np.broadcast_to(host_(snn.nodes[i].v_th), shape))[0]
        np.testing.assert_allclose(np.asarray(starts[i]), want, rtol=0, atol=1e-12)
    whole = []
    half(snn)
    simulate_prerun(snn, x, 4, PreRun(rho, keep(cos_rule, whole)))
    np.testing.assert_allclose(np.asarray(starts[0]), whole[0]["v_start"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_cos_layer_by_layer_reports_L_rho_plus_T_steps_and_runs_no_more(engine):
    _, snn, x = converted("vgg", seed=1)
    half(snn)
    rho, T, L = 2, 5, len(snn.nodes)
    with tracking(1, lambda s: None) as done:
        res = simulate_cos_layerwise(use_engine(snn, engine, 2), x, T, rho, count=True)
    assert res.steps == L * rho + T and done.done == len(x) * (L * rho + T)
    assert len(res.prerun_spikes) == L and res.total_spikes() == sum(res.spikes) + sum(res.prerun_spikes)


@settings(max_examples=8)
@given(name=st.sampled_from(NETS), seed=st.integers(0, 10**6), T=st.integers(1, 6),
       rho=st.integers(0, 4), chunk=st.integers(1, 4), coding=st.sampled_from(["direct", "rate"]))
def test_fast_engine_runs_cos_layer_by_layer_as_the_reference(name, seed, T, rho, chunk, coding):
    _, snn, x = converted(name, seed=seed % 1000)
    half(snn)
    kw = dict(coding=coding, record=True, mean=MEAN, std=STD, seed=seed)
    ref = simulate_cos_layerwise(use_engine(snn, "reference"), x, T, rho, **kw)
    fast = simulate_cos_layerwise(use_engine(snn, "fast", chunk), x, T, rho, **kw)
    same_run(fast, ref)
    assert fast.prerun_spikes == ref.prerun_spikes and fast.steps == ref.steps


def host_(a):
    return to_host(a) if hasattr(a, "shape") else np.asarray(a)


def test_a_bad_prerun_is_a_clear_error():
    _, snn, x = converted("vgg")
    with pytest.raises(ValueError, match="pre-run steps must be an integer"):
        simulate_prerun(snn, x, 4, PreRun(-1, cos_rule))
    for bad in (3, PreRun(-1, cos_rule), PreRun(2.5, cos_rule), PreRun(True, cos_rule),
                PreRun(2, "cos")):
        with pytest.raises(ValueError, match="pre-run|prerun"):
            run_sim(snn, x, 4, prerun=bad)


# --------------------------------------------------------------------------- COS
@pytest.mark.parametrize("name", NETS)
def test_cos_moves_v0_by_one_threshold_where_the_residual_says(name):
    """v_start - v(0) is -V_th exactly where v(rho) < 0 after a spike, +V_th exactly where
    v(rho) > V_th, and 0 everywhere else, per image and neuron."""
    _, snn, x = converted(name, seed=7, n=6)
    half(snn)
    seen = []
    run_sim(snn, x, 4, prerun=PreRun(3, keep(cos_rule, seen)))
    assert len(seen) == len(snn.nodes)
    moved = 0
    for s in seen:
        v, th = s["v"], s["th"]
        want = np.where((v < 0) & (s["count"] > 0), -th, np.where(v > th, th, 0.0))
        np.testing.assert_allclose(s["v_start"] - s["v0"], want, rtol=0, atol=1e-12)
        moved += int((want != 0).sum())
    assert moved > 0                       # the law was exercised, not only its zero case


@settings(max_examples=60)
@given(seed=st.integers(0, 10**6), T=st.integers(1, 20), start=st.floats(0.0, 1.0))
def test_a_shift_of_one_threshold_moves_one_spike(seed, T, start):
    """[COS]'s shifting distance on one IF neuron with currents in [0, V_th] and v(0) in
    [0, V_th]: v(0) - V_th fires exactly one spike less (if it fired at all), v(0) + V_th at
    most one more."""
    th = 0.7
    currents = np.random.default_rng(seed).uniform(0, th, size=(T, 5))

    def count(v0):
        node = IFNode(v_th=th, v0=v0)
        node.reset(5, count=True)
        for c in currents:
            node.forward(c[:, None])
        return node.spike_count[:, 0]

    base = count(start * th)
    np.testing.assert_array_equal(count(start * th - th), np.maximum(base - 1, 0))
    assert set(np.unique(count(start * th + th) - base)) <= {0, 1}


def test_cos_prerun_on_one_image_is_a_plain_run_from_its_v0():
    """The T counted steps of COS are the plain simulation started from the v(0) COS chose
    (one image, so a per-image v(0) is a per-neuron one)."""
    _, snn, x = converted("resnet", seed=11)
    half(snn)
    seen = []
    got = run_sim(snn, x[:1], 6, record=True, prerun=PreRun(4, keep(cos_rule, seen)))
    snn.set_v0([s["v_start"][0] for s in seen])
    same_run(got, simulate(snn, x[:1], 6, record=True))


# --------------------------------------------------------------------------- SRP
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", NETS)
def test_srp_silences_exactly_the_neurons_at_or_below_zero(name, engine):
    _, snn, x = converted(name, seed=9, n=6)
    half(snn)
    seen = []
    res = run_sim(snn, x, 6, record=True, engine=engine, chunk=4,
                   prerun=PreRun(3, keep(srp_rule, seen)))
    silenced = 0
    for s, rec in zip(seen, res.layers):
        gate = to_host(s["gate"])
        np.testing.assert_array_equal(gate, s["v"] > 0)            # the mask is v(tau) > 0
        assert s["v_start"] is None                                # everyone restarts at v(0)
        assert not rec["spike_count"][~gate].any()                 # the silenced never fire
        silenced += int((~gate).sum())
    assert silenced > 0 and sum(res.spikes) > 0


def test_srp_leaves_the_unsilenced_first_layer_as_it_was():
    """The first layer's input is the image (direct coding): a neuron SRP keeps fires as in
    the plain run from v(0)."""
    _, snn, x = converted("vgg", seed=4, n=6)
    half(snn)
    seen = []
    got = run_sim(snn, x, 7, record=True, prerun=PreRun(2, keep(srp_rule, seen)))
    plain = simulate(snn, x, 7, record=True)
    gate = seen[0]["gate"]
    np.testing.assert_array_equal(got.layers[0]["spike_count"][gate],
                                  plain.layers[0]["spike_count"][gate])


# --------------------------------------------------------------------------- SNN Calibration
def _weights(model):
    return {name: (m.params[k], m.params[k].copy()) for name, m, k in model.named_parameters()}


@pytest.mark.parametrize("T", [3, 8])
@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_snn_calibration_leaves_the_ann_untouched(name, T):
    net, snn, x = converted(name, seed=2, n=8)
    before = _weights(net)
    snn_calibration(snn, [x], T)
    snn_calibration_advanced(snn, [x], T)
    snn_calibration_v0(snn, [x], T)
    for name, m, k in net.named_parameters():
        arr, copy = before[name]
        assert m.params[k] is arr                                  # the same arrays ...
        np.testing.assert_array_equal(arr, copy, err_msg=name)     # ... bit for bit unchanged


@pytest.mark.parametrize("T", [4, 8])
@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_snn_calibration_v0_form_leaves_the_error_eq11_predicts_and_reduces_it(name, T):
    """The v(0) ablation, layer by layer: correcting layer l (upstream already corrected) by
    T mu(e) leaves it the error mean(v_T after - v_T before) / T per channel (Eq. 11,
    exactly), and its summed absolute channel error does not grow."""
    net, snn, x = converted(name, seed=6, n=10)
    start = [n.v_th / 2 for n in snn.nodes]
    final = snn_calibration_v0(snn, [x], T)
    ann = relu_outputs(net, [x])
    total_before = total_after = 0.0
    for i in range(len(snn.nodes)):
        v0 = list(final[:i]) + list(start[i:])                     # layer i not yet corrected
        snn.set_v0(v0)
        e_before = layer_errors(snn, [x], T, ann_outputs=ann)[i]
        vt_before = simulate(snn, x, T, keep_v=True).layers[i]["v_T"]
        snn.set_v0(list(final[:i + 1]) + list(start[i + 1:]))
        e_after = layer_errors(snn, [x], T, ann_outputs=ann)[i]
        vt_after = simulate(snn, x, T, keep_v=True).layers[i]["v_T"]
        dv = (vt_after - vt_before) / T
        pred = dv.mean(axis=(0, 2, 3)).reshape(-1, 1, 1) if dv.ndim == 4 else dv.mean(axis=0)
        np.testing.assert_allclose(e_after, pred, rtol=0, atol=1e-10)
        assert np.abs(e_after).sum() <= np.abs(e_before).sum() + 1e-12, f"layer {i}"
        total_before += np.abs(e_before).sum()
        total_after += np.abs(e_after).sum()
    assert total_after < total_before


@pytest.mark.parametrize("T", [4, 8])
@pytest.mark.parametrize("name", ["vgg", "resnet"])
@pytest.mark.parametrize("form", ["light", "advanced"])
def test_snn_calibration_as_published_leaves_the_error_eq11_predicts(name, T, form):
    """The published forms: every v(0) starts at 0 and every layer gets theta/(2T) as a
    current at every step; then layer by layer, a current mu(e) per channel (light) or
    v(0) = T e per neuron (advanced) leaves layer l the error mean(change of v(T)) / T (per
    channel, resp. per neuron: Eq. 11 with a current or a v(0) added, exactly)."""
    net, snn, x = converted(name, seed=6, n=10)
    cal = (snn_calibration if form == "light" else snn_calibration_advanced)(snn, [x], T)
    per = "channel" if form == "light" else "neuron"
    currents = [m for m in cal.flat if isinstance(m, StepCurrent)] + \
        [m for _, m in cal.tree.named_modules() if isinstance(m, StepCurrent)]
    currents = list({id(c): c for c in currents}.values())
    assert len(currents) == len(snn.nodes) and cal.nodes == snn.nodes
    final_v0, final_cur = [n.v0 for n in snn.nodes], [c.current for c in currents]
    shift = [n.v_th / (2 * T) for n in snn.nodes]
    if form == "advanced":
        assert all(np.all(c == s_) for c, s_ in zip(final_cur, shift))   # no bias correction
    else:
        assert all(np.all(v == 0.0) for v in final_v0)                   # v(0) = 0 throughout
    ann = relu_outputs(net, [x])
    for i in range(len(snn.nodes)):
        for k, c in enumerate(currents):                  # layers < i corrected, the rest not
            c.current = final_cur[k] if k < i else shift[k]
        snn.set_v0([final_v0[k] if k < i else 0.0 for k in range(len(snn.nodes))])
        e_before = layer_errors(cal, [x], T, ann_outputs=ann, per=per)[i]
        vt_before = simulate(cal, x, T, keep_v=True).layers[i]["v_T"]
        currents[i].current = final_cur[i]
        snn.set_v0([final_v0[k] if k <= i else 0.0 for k in range(len(snn.nodes))])
        e_after = layer_errors(cal, [x], T, ann_outputs=ann, per=per)[i]
        vt_after = simulate(cal, x, T, keep_v=True).layers[i]["v_T"]
        dv = (vt_after - vt_before) / T
        pred = dv.mean(axis=0) if per == "neuron" or dv.ndim == 2 else \
            dv.mean(axis=(0, 2, 3)).reshape(-1, 1, 1)
        np.testing.assert_allclose(e_after, pred, rtol=0, atol=1e-10)
        assert np.abs(e_after).sum() <= np.abs(e_before).sum() + 1e-12 or form == "advanced"


def test_with_currents_adds_a_current_in_front_of_every_node_and_nothing_else():
    net, snn, x = converted("resnet", seed=3)
    cal, currents = with_currents(snn)
    np.testing.assert_array_equal(simulate(cal, x, 5, record=True).output,
                                  simulate(snn, x, 5, record=True).output)      # currents 0
    currents[0].current = 0.3
    moved = simulate(cal, x, 5, count=True).spikes
    assert moved != simulate(snn, x, 5, count=True).spikes                        # it acts
    assert cal.nodes == snn.nodes and cal.ann is snn.ann


def test_snn_calibration_needs_the_ann():
    net, snn, x = converted("vgg")
    snn.ann = None
    for fn in (snn_calibration, snn_calibration_advanced, snn_calibration_v0):
        with pytest.raises(ValueError, match="ANN"):
            fn(snn, [x], 4)


# --------------------------------------------------------------------------- MSE thresholds
@settings(max_examples=40)
@given(seed=st.integers(0, 10**6), T=st.integers(1, 32), p=st.floats(0.5, 1.0),
       zeros=st.floats(0.0, 0.8))
def test_the_mse_threshold_is_the_best_candidate(seed, T, p, zeros):
    rng = np.random.default_rng(seed)
    a = rng.gamma(1.5, 1.0, size=500) * (rng.random(500) > zeros)
    if a.max() <= 0:
        a[0] = 1.0
    q = float(np.quantile(a, p)) or float(a.max())
    th, cands, errors = mse_threshold(a, T, extra=(q,))
    assert th in cands and len(cands) == 101
    np.testing.assert_allclose(cands[:100], a.max() * (1 - 0.01 * np.arange(100)))

    def error(v):                        # the squared error, written out again
        k = np.minimum(np.maximum(np.floor(a * T / v), 0), T)
        return np.mean((a - k * v / T) ** 2)

    best = error(th)
    assert all(best <= error(c) + 1e-15 for c in cands)
    assert best <= error(q) + 1e-15
    np.testing.assert_allclose(errors, [error(c) for c in cands], rtol=1e-12, atol=1e-15)


def test_clip_floor_is_the_T_step_output_of_a_constant_input():
    """clip_floor is what an IF neuron from v(0) = 0 emits for a constant input current (in
    [-1, 2] V_th, clipped at 0 and V_th), decoded as spikes x V_th / T."""
    th, T = 0.8, 7
    a = np.linspace(-0.8, 1.6, 97)
    node = IFNode(v_th=th)
    node.reset(len(a), count=True)
    for _ in range(T):
        node.forward(a[:, None].copy())
    np.testing.assert_allclose(node.spike_count[:, 0] * th / T, clip_floor(a, T, th), atol=1e-12)
    assert quantisation_error(np.array([0.0, th]), T, th) == 0.0


@pytest.mark.parametrize("T", [2, 8])
def test_mse_thresholds_set_every_layer_and_quantile_restores(T):
    net, snn, x = converted("resnet", seed=4, n=6)
    q = [float(n.v_th) for n in snn.nodes]
    ths = mse_thresholds(snn, [x], T)
    assert [float(n.v_th) for n in snn.nodes] == q                   # the SNN is not changed
    acts = relu_outputs(net, [x])
    for a, qq, th in zip(acts, q, ths):
        assert float(th) == pytest.approx(mse_threshold(a, T, extra=(qq,))[0], rel=1e-6)
        assert quantisation_error(a, T, th) <= quantisation_error(a, T, qq) * (1 + 1e-6)
    keeper = Thresholds(snn, [x])
    assert [float(t) for t in keeper.use("mse", T)] == [float(t) for t in ths]
    assert [float(n.v_th) for n in snn.nodes] == [float(t) for t in ths]
    keeper.use("quantile", T)
    assert [float(n.v_th) for n in snn.nodes] == q


def test_mse_thresholds_are_layer_wise():
    net, snn, x = converted("vgg")
    balance_thresholds(snn, net, [x], p=0.9, rule=channel_threshold)
    with pytest.raises(ValueError, match="layer-wise"):
        mse_thresholds(snn, [x], 4)


# --------------------------------------------------------------------------- by name
def test_the_methods_are_variants_by_name():
    assert set(METHOD_VARIANTS) <= set(METHODS)
    net = tiny_vgg(1, widths=(4, 4), hidden=5)
    x = images(6)
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=0.95)
    for v, steps in (("cos", 3), ("srp", 2)):
        cfg = ConversionConfig(prerun=steps)
        run = calibrate(snn, v, 8, [x], cfg)
        assert [n.v0 for n in snn.nodes] == [n.v_th / 2 for n in snn.nodes]
        assert run.prerun == steps and run.steps(8) == {"prerun": steps, "steps": 8 + steps}
    assert calibrate(snn, "c-snn", 8, [x], ConversionConfig()).steps(8) == {"prerun": 0, "steps": 8}
    with pytest.raises(ValueError, match="calibration batches"):
        METHODS["snn-calib"].setup(snn, 8)
    METHODS["snn-calib-v0"].setup(snn, 8, [x])
    assert [np.shape(v) for v in [n.v0 for n in snn.nodes]] == [(4, 1, 1), (4, 1, 1), (5,)]
    run = calibrate(snn, "snn-calib", 8, [x], ConversionConfig())
    assert run.setup.snn is not snn and run.setup.snn.nodes == snn.nodes and run.prerun == 0
    assert calibrate(snn, "cos-layer", 8, [x], ConversionConfig(prerun=2)).prerun == 2 * 3
    q = [float(n.v_th) for n in snn.nodes]
    keeper = Thresholds(snn, [x])
    run = calibrate(snn, "srp", 8, [x], ConversionConfig(threshold_search="mse"), keeper)
    assert [float(n.v_th) for n in snn.nodes] != q and run.prerun == 4
    calibrate(snn, "snn", 8, [x], ConversionConfig(), keeper)
    assert [float(n.v_th) for n in snn.nodes] == q


def test_evaluate_conversion_reports_the_prerun_beside_T():
    net = tiny_vgg(2, widths=(4, 4), hidden=5)
    x, y = images(12, seed=3), np.arange(12) % 3
    cfg = ConversionConfig(T=(4,), variants=("c-snn", "snn-calib", "cos", "srp"), n_calib=6,
                           batch_size=6, prerun=2, threshold_search="mse")
    res = evaluate_conversion(net, images(6, seed=5), x, y, cfg)
    rows = {v: r["4"] for v, r in res["variants"].items()}
    assert {v: (r["prerun"], r["steps"]) for v, r in rows.items()} == {
        "c-snn": (0, 4), "snn-calib": (0, 4), "cos": (2, 6), "srp": (2, 6)}
    with pytest.raises(ValueError, match="layer-wise"):
        ConversionConfig(threshold_search="mse", channelwise=True).validate()


# --------------------------------------------------------------------------- the reference
@pytest.mark.parametrize("name", ["vgg", "resnet"])          # a linear layer before the first node
def test_the_quantised_ann_is_the_first_layer_of_a_half_started_snn(name):
    """With direct coding the first IF layer receives its mean input at every step, so from
    v(0) = V_th/2 it computes exactly the T-level rounding of the ANN's ReLU output."""
    net, snn, x = converted(name, seed=8, n=5)
    half(snn)
    T = 6
    q = quantised_ann(snn, T)
    h = x
    for m in q.flat():
        h = m.forward(h)
        if isinstance(m, Quantiser):
            break
    np.testing.assert_allclose(h, simulate(snn, x, T, record=True).layers[0]["decoded"],
                               rtol=0, atol=1e-12)
    assert all(m.params[k] is a for (_, m, k), a in
               zip(q.named_parameters(), [m.params[k] for _, m, k in net.named_parameters()]))


@pytest.mark.parametrize("form", ["light", "advanced", "v0"])
def test_snn_calibration_keeps_a_float32_network_in_float32(form):
    """The corrections are found in float64 on the host, but the calibrated SNN runs in the
    network's dtype: no float64 current turns every layer after it into float64."""
    net = tiny_vgg(2, dtype=np.float32)
    x = images(n=6).astype(np.float32)
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=0.9)
    fn = {"light": snn_calibration, "advanced": snn_calibration_advanced,
          "v0": snn_calibration_v0}[form]
    out = fn(snn, [x], 4)
    sim = out if form != "v0" else snn
    res = simulate(sim, x, 4, keep_v=True)
    assert res.output.dtype == np.float32
    assert all(rec["v_T"].dtype == np.float32 for rec in res.layers)
    assert StepCurrent(np.ones(3)).forward(np.zeros((2, 3), np.float32)).dtype == np.float32
