"""beyond/qcfs.py: the QCFS activation (Bu et al., ICLR 2022) with hand-written backprop.

* forward is the formula, and it is what an IF neuron from v(0) = λ/2 emits over L steps of
  a constant input (so a QCFS ANN converts with V_th = λ);
* backward is the official code's autograd: straight through the floor, the clip's mask,
  dλ = q - u inside, 1 above: checked against finite differences in float64 away from the
  floor's steps;
* a QCFS network trains (fast == reference), saves, loads and converts with V_th = λ.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import F64, images, tiny_vgg
from hypothesis import given, settings
from hypothesis import strategies as st

from icsnn_np.beyond.qcfs import QCFS, initial_lams, qcfs_layers, qcfs_thresholds, with_qcfs
from icsnn_np.convert import convert, relu_outputs
from icsnn_np.layers import ReLU
from icsnn_np.neurons import IFNode


def qcfs(levels, lam):
    m = QCFS(levels, lam, dtype=F64)
    return m


@settings(max_examples=40)
@given(L=st.integers(1, 16), lam=st.floats(0.2, 5.0), seed=st.integers(0, 10**6))
def test_forward_is_the_formula_and_the_if_neuron_over_L_steps(L, lam, seed):
    x = np.random.default_rng(seed).uniform(-0.5 * lam, 1.5 * lam, size=(64, 5))
    y = qcfs(L, lam).forward(x)
    np.testing.assert_allclose(y, lam * np.clip(np.floor(x * L / lam + 0.5) / L, 0, 1), rtol=1e-12)
    node = IFNode(v_th=lam, v0=lam / 2)              # the SNN reading: V_th = λ, v(0) = λ/2
    node.reset(64, count=True)
    for _ in range(L):
        node.forward(x)
    np.testing.assert_allclose(node.spike_count * lam / L, y, rtol=1e-9, atol=1e-12)


def _numeric(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        a[i] += eps
        up = f()
        a[i] -= 2 * eps
        down = f()
        a[i] += eps
        g[i] = (up - down) / (2 * eps)
    return g


@settings(max_examples=25)
@given(L=st.integers(1, 8), lam=st.floats(0.5, 3.0), seed=st.integers(0, 10**6))
def test_gradients_are_the_official_autograd(L, lam, seed):
    """dL/dλ by finite differences of the *straight-through* surrogate (floor taken as
    identity in its derivative: the forward with q held fixed and u differentiated), and
    dL/dx = the clip's mask, on inputs away from the floor's steps. Where q is exactly 0 or
    1 (a kink of the clip, which autograd takes as inside) only the formula is checked."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.6 * lam, 1.6 * lam, size=(6, 7))
    step = (x * L / lam + 0.5) % 1
    x[(step < 0.02) | (step > 0.98)] += 0.05 * lam / L          # keep off the steps
    g = rng.normal(size=x.shape)
    q = np.floor(x * L / lam + 0.5) / L
    g[(q == 0) | (q == 1)] = 0.0                                 # the kinks: formula only
    m = qcfs(L, lam)
    y = m.forward(x)
    dx = m.backward(g)
    u = x / lam
    inside = (q >= 0) & (q <= 1)
    np.testing.assert_array_equal(dx, g * inside)

    def surrogate():                               # y = λ clip(q + (u - u0), 0, 1) at fixed q
        lam_ = m.params["lam"][0]
        q_ = q + (x / lam_ - u)
        return float((g * lam_ * np.clip(q_, 0, 1)).sum())

    num = _numeric(surrogate, m.params["lam"])
    np.testing.assert_allclose(m.grads["lam"], num, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.grads["lam"][0], (g * (inside * (q - u) + (q > 1))).sum(),
                               rtol=1e-12)


def test_the_lambda_gradient_by_hand():
    """x = 0.3, 2.0, -1.0 at λ = 1, L = 4: q = 0.25 (inside: q - u = -0.05), 2.0 -> q > 1
    (gradient 1), -1.0 -> q < 0 (gradient 0); dx = 1, 0, 0."""
    m = qcfs(4, 1.0)
    x = np.array([[0.3, 2.0, -1.0]])
    m.forward(x)
    dx = m.backward(np.ones_like(x))
    assert m.grads["lam"][0] == pytest.approx(-0.05 + 1.0)
    np.testing.assert_array_equal(dx, [[1.0, 0.0, 0.0]])


def test_a_qcfs_network_converts_with_v_th_lambda_and_trains():
    net = tiny_vgg(3, widths=(4, 4), hidden=5)
    q = with_qcfs(net, 4, lam=[1.0, 2.0, 3.0])
    assert [m.levels for m in qcfs_layers(q)] == [4, 4, 4]
    assert not any(type(m) is ReLU for _, m in q.named_modules())
    mine = {n: m.params[k] for n, m, k in q.named_parameters()}
    assert all(mine[n] is m.params[k] for n, m, k in net.named_parameters())   # shared weights
    assert sorted(set(mine) - {n for n, _, _ in net.named_parameters()}) == [
        "1.lam", "4.lam", "7.lam"]
    snn = convert(q)
    assert [float(t) for t in qcfs_thresholds(snn, q)] == [1.0, 2.0, 3.0]
    x = images(8)
    lams = initial_lams(net, [x], p=0.999)
    np.testing.assert_allclose(lams, [np.quantile(a, 0.999) for a in relu_outputs(net, [x])])
    with pytest.raises(ValueError, match="every activation is QCFS"):
        qcfs_thresholds(convert(net), net)


def test_the_bundled_qcfs_model_converts_with_its_lambda_by_name(capsys):
    """`demo --checkpoint vgg_cpu_qcfs` runs offline: the header says QCFS with L levels, every
    activation is QCFS, V_th = λ, and the JSON names that threshold rule."""
    import json

    from icsnn_np.cli import demo
    from icsnn_np.runs.checkpoints import load_model
    model, header = load_model("vgg_cpu_qcfs")
    assert header["activation"] == "qcfs" and header["levels"] == 8
    assert len(qcfs_layers(model)) == 6 and not any(type(m) is ReLU for _, m in model.named_modules())
    rc = demo.main(["--checkpoint", "vgg_cpu_qcfs", "--variants", "c-snn", "cos", "--comp", "half",
                    "--T", "4", "--n-test", "10", "--n-calib", "16", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["config"]["threshold_rule"].startswith("qcfs")
    assert out["variants"]["cos"]["4"]["steps"] == 8 and out["variants"]["c-snn"]["4"]["steps"] == 4
