"""Training: the loss, the optimiser and the schedule against hand computations, then short
end-to-end runs on the bundled CIFAR-10 slice (checkpoints, determinism, divergence, CLI)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds

from icsnn_np.backend import to_device, to_host
from icsnn_np.checkpoint import load_checkpoint
from icsnn_np.data import SLICE_PATH
from icsnn_np.layers import Linear, Sequential
from icsnn_np.models import build_model
from icsnn_np.train import (PAPER_MILESTONES, SGD, TrainConfig, TrainingDiverged, cross_entropy,
                            lr_at, main, scaled_milestones, train)


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


# --------------------------------------------------------------------------- end to end
needs_slice = pytest.mark.skipif(not SLICE_PATH.is_file(), reason=f"{SLICE_PATH} not built yet")


def _cfg(tmp_path, name="m", **kw):
    base = dict(dataset="cifar10-slice", model="vgg_cpu", epochs=1, train_limit=128,
                batch_size=64, out=str(tmp_path / f"{name}.npz"))
    return TrainConfig(**{**base, **kw})


def _run(cfg):
    lines = []
    return train(cfg, log=lines.append), lines


@needs_slice
def test_train_one_epoch_saves_loadable_checkpoints(tmp_path):
    res, lines = _run(_cfg(tmp_path, train_limit=256, batch_size=128))
    assert len(res["history"]) == 1
    rec = res["history"][0]
    assert np.isfinite(rec["loss"]) and 0 <= rec["test_acc"] <= 1 and 0 <= rec["train_acc"] <= 1
    assert any("epoch   1/1" in ln for ln in lines)
    trained = res["model"].state_dict()
    for path in (res["out"], res["best"]):
        model, head = load_checkpoint(path, arch="vgg_cpu")
        assert head["dataset"] == "cifar10-slice" and head["epoch"] == 1
        assert head["test_acc"] == rec["test_acc"]
        np.testing.assert_allclose(head["mean"], res["mean"], rtol=1e-6)
        np.testing.assert_allclose(head["std"], res["std"], rtol=1e-6)
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, to_host(trained[k]), err_msg=k)
    # an epoch of SGD moved the weights away from their initialisation
    init = build_model("vgg_cpu", seed=0).state_dict()
    assert not np.array_equal(init["features.0.weight"], to_host(trained["features.0.weight"]))


@needs_slice
def test_same_seed_gives_identical_weights(tmp_path):
    a, _ = _run(_cfg(tmp_path, "a", seed=1))
    b, _ = _run(_cfg(tmp_path, "b", seed=1))
    c, _ = _run(_cfg(tmp_path, "c", seed=2))
    sa, sb, sc = (r["model"].state_dict() for r in (a, b, c))
    for k in sa:
        np.testing.assert_array_equal(to_host(sa[k]), to_host(sb[k]), err_msg=k)
    assert a["history"][0]["loss"] == b["history"][0]["loss"]
    assert all(not np.array_equal(to_host(sa[k]), to_host(sc[k])) for k in sa if k.endswith("weight"))


@needs_slice
@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # overflow is the point here
def test_diverging_run_stops_and_suggests_a_lower_lr(tmp_path):
    cfg = _cfg(tmp_path, "div", lr=1e6, batch_size=32)
    with pytest.raises(TrainingDiverged, match=r"lower learning rate.*--lr 500000"):
        train(cfg, log=lambda s: None)
    assert not list(tmp_path.glob("*.npz"))                     # no garbage checkpoint


@needs_slice
def test_cli_tiny_run_returns_0(tmp_path, capsys):
    out = tmp_path / "cli.npz"
    rc = main(["--dataset", "cifar10-slice", "--model", "vgg_cpu", "--epochs", "1",
               "--train-limit", "64", "--batch-size", "32", "--no-augment", "--out", str(out)])
    assert rc == 0
    assert out.is_file() and (tmp_path / "cli_best.npz").is_file()
    assert "epoch   1/1" in capsys.readouterr().out
    assert load_checkpoint(out)[1]["train_config"]["augment"] is False


@needs_slice
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cli_diverging_run_returns_1_with_the_reason(tmp_path, capsys):
    rc = main(["--dataset", "cifar10-slice", "--epochs", "1", "--train-limit", "64",
               "--batch-size", "16", "--lr", "1e6", "--out", str(tmp_path / "d.npz")])
    assert rc == 1
    assert "error: training diverged" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "0"], ["--batch-size", "0"]])
def test_cli_rejects_bad_settings(tmp_path, args):
    with pytest.raises(SystemExit) as info:
        main(["--dataset", "cifar10-slice", "--out", str(tmp_path / "x.npz"), *args])
    assert info.value.code == 2
