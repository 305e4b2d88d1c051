"""optim.py: the loss, the optimiser and the lr schedule against hand computations and
float64 references (PyTorch's semantics)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds

from icsnn_np.backend import to_device, to_host
from icsnn_np.layers import Linear
from icsnn_np.module import Sequential
from icsnn_np.optim import PAPER_EPOCHS, PAPER_MILESTONES, SGD, cross_entropy, lr_at, scaled_milestones
from icsnn_np.runs.resume import load_momentum_state, momentum_state
from icsnn_np.runs.training import TrainingDiverged, lr_with_warmup


# --------------------------------------------------------------------------- loss
def reference_cross_entropy(logits, labels):
    """Float64 mean -log softmax[label], with log-sum-exp by np.logaddexp (another route)."""
    z = np.asarray(logits, np.float64)
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)     # (N, K) log-softmax
    n = len(labels)
    onehot = np.eye(z.shape[1])[labels]
    return -logp[np.arange(n), labels].mean(), (np.exp(logp) - onehot) / n


@given(n=st.integers(1, 6), k=st.integers(2, 12), scale=st.floats(0.01, 50), seed=seeds)
def test_cross_entropy_equals_float64_reference(n, k, scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * scale
    labels = rng.integers(0, k, size=n)
    want_loss, want_grad = reference_cross_entropy(logits, labels)
    loss, grad = cross_entropy(logits, labels)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
    loss32, grad32 = cross_entropy(logits.astype(np.float32), labels)
    np.testing.assert_allclose(float(loss32), want_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad32, want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4], [3e4, 3e4, 3e4]], dtype=dtype)
    labels = np.array([0, 0, 2])
    loss, grad = cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # row 0: right class far ahead -> 0; row 1: 1e4 + 1e4 behind two equal rivals -> 2e4 + log 2;
    # row 2: three equal logits -> log 3
    want = (0.0 + 2e4 + np.log(2) + np.log(3)) / 3
    np.testing.assert_allclose(float(loss), want, rtol=1e-6)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-6)       # softmax - onehot sums to 0


def test_cross_entropy_on_backend_agrees_with_numpy(xp, rng):
    logits = rng.normal(size=(5, 10)) * 3
    labels = rng.integers(0, 10, size=5)
    want_loss, want_grad = cross_entropy(logits, labels)
    loss, grad = cross_entropy(to_device(logits, xp), to_device(labels, xp))
    np.testing.assert_allclose(to_host(loss), want_loss, rtol=1e-12)
    np.testing.assert_allclose(to_host(grad), want_grad, rtol=1e-12, atol=1e-15)


@given(n=st.integers(1, 4), k=st.integers(2, 6), seed=seeds)
def test_cross_entropy_gradient_matches_central_differences(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    labels = rng.integers(0, k, size=n)
    _, grad = cross_entropy(logits, labels)
    eps = 1e-6
    num = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        lp, lm = logits.copy(), logits.copy()
        lp[idx] += eps
        lm[idx] -= eps
        num[idx] = (float(cross_entropy(lp, labels)[0]) - float(cross_entropy(lm, labels)[0])) / (2 * eps)
    err = np.abs(num - grad).max() / max(np.abs(grad).max(), 1e-8)
    assert err < 1e-6, f"relative error {err:.3g}"


# --------------------------------------------------------------------------- optimiser
def _tiny_model(seed=0):
    return Sequential(Linear(3, 2, rng=np.random.default_rng(seed), dtype=np.float64))


def test_sgd_two_steps_follow_pytorch_semantics(rng):
    lr, mom, wd = 0.05, 0.9, 5e-3
    model = _tiny_model()
    lin = model[0]
    lin.params["bias"][...] = rng.normal(size=2)
    opt = SGD(model, lr=lr, momentum=mom, weight_decay=wd)
    p0 = {k: v.copy() for k, v in lin.params.items()}
    w_ref = lin.params["weight"]
    g1 = {k: rng.normal(size=v.shape) for k, v in p0.items()}
    g2 = {k: rng.normal(size=v.shape) for k, v in p0.items()}

    for k in p0:
        lin.grads[k][...] = g1[k]
    opt.step()
    for k in p0:
        np.testing.assert_array_equal(lin.grads[k], g1[k])     # step leaves the gradients alone
        lin.grads[k][...] = g2[k]
    opt.step()

    for k in p0:
        # torch.optim.SGD: d = g + wd*p; buf = d (first step) else mom*buf + d; p -= lr*buf
        buf = g1[k] + wd * p0[k]
        p1 = p0[k] - lr * buf
        buf = mom * buf + (g2[k] + wd * p1)
        p2 = p1 - lr * buf
        np.testing.assert_allclose(lin.params[k], p2, rtol=1e-14, atol=1e-15, err_msg=k)
    assert lin.params["weight"] is w_ref                        # updated in place


def test_plain_sgd_without_momentum_or_decay(rng):
    model = _tiny_model()
    lin = model[0]
    p0 = lin.params["weight"].copy()
    g = rng.normal(size=p0.shape)
    opt = SGD(model, lr=0.3, momentum=0.0, weight_decay=0.0)
    for _ in range(2):
        lin.grads["weight"][...] = g
        opt.step()
    np.testing.assert_allclose(lin.params["weight"], p0 - 2 * 0.3 * g, rtol=1e-14)


# --------------------------------------------------------------------------- schedule
def test_paper_milestones_at_300_epochs():
    assert scaled_milestones(300) == (70, 130, 190, 240) == PAPER_MILESTONES
    assert scaled_milestones(600) == (70, 130, 190, 240)      # never stretched


@pytest.mark.parametrize("epochs, want", [(30, (7, 13, 19, 24)), (150, (35, 65, 95, 120)),
                                          (100, (23, 43, 63, 80)), (3, (1, 2)), (1, (1,))])
def test_milestones_scale_with_fewer_epochs(epochs, want):
    got = scaled_milestones(epochs)
    assert got == want
    assert list(got) == sorted(set(got)) and all(1 <= m <= max(1, epochs) for m in got)


def test_lr_at_divides_by_five_at_each_milestone():
    ms = (70, 130, 190, 240)
    assert lr_at(0, 0.1, ms) == pytest.approx(0.1)
    assert lr_at(69, 0.1, ms) == pytest.approx(0.1)
    assert lr_at(70, 0.1, ms) == pytest.approx(0.02)
    assert lr_at(129, 0.1, ms) == pytest.approx(0.02)
    assert lr_at(130, 0.1, ms) == pytest.approx(0.004)
    assert lr_at(239, 0.1, ms) == pytest.approx(0.1 * 0.2 ** 3)
    assert lr_at(299, 0.1, ms) == pytest.approx(0.1 * 0.2 ** 4)
    assert lr_at(5, 0.1, (5,), gamma=0.5) == pytest.approx(0.05)
    assert lr_at(100, 0.1, ()) == pytest.approx(0.1)


# --------------------------------------------------------------------------- warm-up
def test_warmup_ramps_linearly_batch_by_batch_then_follows_the_steps():
    """warmup = 2 epochs of 4 batches: lr rises by base/8 per batch, reaching base at the last
    batch of epoch 1, then the step schedule; no warm-up is the step schedule itself."""
    base, ms, nb = 0.1, (3,), 4
    ramp = [lr_with_warmup(e, b, nb, base, ms, warmup=2) for e in range(2) for b in range(nb)]
    np.testing.assert_allclose(ramp, [base * k / 8 for k in range(1, 9)], rtol=1e-12)
    assert lr_with_warmup(2, 0, nb, base, ms, warmup=2) == pytest.approx(base)
    assert lr_with_warmup(3, 2, nb, base, ms, warmup=2) == pytest.approx(base * 0.2)
    for e in range(5):
        for b in range(nb):
            assert lr_with_warmup(e, b, nb, base, ms) == lr_at(e, base, ms)


def test_warmup_multiplies_an_already_stepped_lr():
    """A milestone inside the warm-up: the ramp scales the stepped lr (epoch 1 of 2, batch 0
    of 2: 3/4 of base * 0.2)."""
    assert lr_with_warmup(1, 0, 2, 1.0, (1,), warmup=2) == pytest.approx(0.2 * 3 / 4)


# --------------------------------------------------------------------------- momentum state
def test_momentum_state_roundtrip_continues_identically(rng):
    """Saving and loading the momentum buffers mid-run gives the same next steps as not
    stopping (what train --resume relies on); unknown names are refused."""
    def run(stop_after=None):
        model = _tiny_model(1)
        opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3)
        g = np.random.default_rng(7)
        for i in range(4):
            for _, m, k in model.named_parameters():
                m.grads[k][...] = g.normal(size=m.grads[k].shape)
            opt.step()
            if i == stop_after:
                state = {n: b.copy() for n, b in momentum_state(opt).items()}
                weights = {n: v.copy() for n, v in model.state_dict().items()}
                model = _tiny_model(1)
                model.load_state_dict(weights)
                opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3)
                load_momentum_state(opt, state, np)
        return model.state_dict()

    assert set(momentum_state(SGD(_tiny_model()))) == set()          # no step yet: no buffers
    straight, resumed = run(), run(stop_after=1)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    opt = SGD(_tiny_model())
    assert opt.names == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="momentum for unknown parameters"):
        load_momentum_state(opt, {"9.weight": np.zeros(2)}, np)


def test_paper_constants_and_the_divergence_error():
    assert PAPER_EPOCHS == 300 and PAPER_MILESTONES == (70, 130, 190, 240)
    assert issubclass(TrainingDiverged, RuntimeError)


def test_sgd_and_its_state_on_backend_agree_with_numpy(xp, rng):
    """Two SGD steps (momentum, weight decay) with the network on the device, the momentum
    state saved to the host and restored onto the device: NumPy's parameters."""
    def run(xp_):
        net = Sequential(Linear(4, 3, rng=np.random.default_rng(1), dtype=np.float64)).to(xp_)
        opt = SGD(net, lr=0.1, momentum=0.9, weight_decay=5e-4)
        for step in range(2):
            net.zero_grad()
            net.forward(to_device(x, xp_))
            net.backward(to_device(g * (step + 1), xp_))
            opt.step()
        state = {k: to_host(v) for k, v in momentum_state(opt).items()}
        again = SGD(net, lr=0.1, momentum=0.9, weight_decay=5e-4)
        load_momentum_state(again, state, xp_)
        again.step()                                 # the same grads once more
        return [to_host(m.params[k]) for _, m, k in net.named_parameters()], state

    x, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    (got, got_state), (want, want_state) = run(xp), run(np)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for k in want_state:
        assert type(got_state[k]) is np.ndarray
        np.testing.assert_allclose(got_state[k], want_state[k], rtol=1e-12, atol=1e-14)
