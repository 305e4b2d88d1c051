"""Training (train.py): short end-to-end runs on the bundled CIFAR-10 slice: checkpoints,
determinism, divergence, both engines, Fixup and warm-up options, ``--resume`` (an
interrupted run continues bit for bit), the CLI. (Loss, SGD, schedule: test_optim.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest

from icsnn_np.runs import training as train_mod
from icsnn_np.backend import to_host
from icsnn_np.io.checkpoint import CheckpointError, load_checkpoint
from icsnn_np.io.data import SLICE_PATH
from icsnn_np.models import build_model
from icsnn_np.optim import TrainingDiverged
from icsnn_np.cli.train import main
from icsnn_np.runs.training import RESUME_KEYS, TrainConfig, resume_path, train


# --------------------------------------------------------------------------- end to end
needs_slice = pytest.mark.skipif(not SLICE_PATH.is_file(), reason=f"{SLICE_PATH} not built yet")


def _cfg(tmp_path, name="m", **kw):
    """A tiny run; the fast engine by default (the teaching layers take ~4x longer, mostly
    to test on the slice's 1000 images after each epoch)."""
    base = dict(dataset="cifar10-slice", model="vgg_cpu", epochs=1, train_limit=128,
                batch_size=64, out=str(tmp_path / f"{name}.npz"), engine="fast")
    return TrainConfig(**{**base, **kw})


def _run(cfg):
    lines = []
    return train(cfg, log=lines.append), lines


@needs_slice
def test_train_one_epoch_saves_loadable_checkpoints(tmp_path):
    """On the teaching layers (engine="reference"; TrainConfig's default is the fast engine,
    runs/engine.py)."""
    assert TrainConfig().engine == "fast"
    res, lines = _run(_cfg(tmp_path, train_limit=64, batch_size=32, engine="reference"))
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
    assert any("reference engine" in ln for ln in lines)


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
    with pytest.raises(TrainingDiverged, match=r"training diverged at batch \d+: loss = .*lower learning rate or --warmup"):
        train(cfg, log=lambda s: None)
    assert not list(tmp_path.glob("*.npz"))                     # no garbage checkpoint


@needs_slice
def test_cli_tiny_run_returns_0(tmp_path, capsys):
    out = tmp_path / "cli.npz"
    rc = main(["--dataset", "cifar10-slice", "--model", "vgg_cpu", "--epochs", "1",
               "--train-limit", "64", "--batch-size", "32", "--no-augment", "--out", str(out)])
    assert rc == 0
    assert out.is_file() and (tmp_path / "cli_best.npz").is_file()
    assert "epoch   1/1" in capsys.readouterr().err           # progress: stderr
    assert load_checkpoint(out)[1]["train_config"]["augment"] is False


@needs_slice
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cli_diverging_run_returns_2_with_the_reason(tmp_path, capsys):
    rc = main(["--dataset", "cifar10-slice", "--epochs", "1", "--train-limit", "64",
               "--batch-size", "16", "--lr", "1e6", "--out", str(tmp_path / "d.npz")])
    assert rc == 2
    assert "error: epoch 1: training diverged" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "0"], ["--batch-size", "0"]])
def test_cli_rejects_bad_settings(tmp_path, args):
    assert main(["--dataset", "cifar10-slice", "--out", str(tmp_path / "x.npz"), *args]) == 2


# --------------------------------------------------------------------------- options
@needs_slice
def test_warmup_ramps_the_lr_of_the_first_epochs(tmp_path):
    """history's lr is the lr of an epoch's last batch: with 2 batches per epoch and a
    2-epoch warm-up, base/2 after epoch 1 and base after epoch 2."""
    res, lines = _run(_cfg(tmp_path, epochs=2, train_limit=64, batch_size=32, lr=0.05, warmup=2,
                           milestones=(5,)))
    assert [h["lr"] for h in res["history"]] == pytest.approx([0.025, 0.05])
    assert any("warm-up 2" in ln for ln in lines)


class _Stop(Exception):
    pass


@needs_slice
def test_fixup_init_is_applied_and_needs_a_resnet(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="fixup_init needs a residual network"):
        train(_cfg(tmp_path, init="fixup"), log=lambda s: None)
    seen, real = [], train_mod.fixup_init
    monkeypatch.setattr(train_mod, "fixup_init", lambda m: seen.append(m) or real(m))

    def first_epoch(net, opt, *a, **k):                    # only the set-up is under test
        seen.append(opt)
        raise _Stop

    monkeypatch.setattr(train_mod, "train_epoch", first_epoch)
    with pytest.raises(_Stop):
        train(_cfg(tmp_path, "fx", model="resnet20", init="fixup"), log=lambda s: None)
    model, opt = seen
    assert not np.any(model.children["fc"].params["weight"])      # fixup's zero classifier ...
    assert opt.slots[-2][0] is model.children["fc"]                # ... is what the optimiser trains


# --------------------------------------------------------------------------- resume
def _interrupting_evaluate(monkeypatch, after_epochs=1):
    """train's per-epoch scoring (validation, then test: two calls an epoch) raises
    KeyboardInterrupt in epoch ``after_epochs + 1``: the run stops after the checkpoints of
    epoch ``after_epochs`` were written, mid epoch after."""
    real, calls = train_mod.evaluate, []

    def evaluate(*a, **k):
        calls.append(1)
        if len(calls) > 2 * after_epochs:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate", evaluate)


RESUME_RUN = dict(epochs=2, train_limit=64, batch_size=32, warmup=1, milestones=(1,), seed=3)


@needs_slice
def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch):
    """Weights, momentum, the RNG (shuffles, augmentation) and the schedule all carry over:
    2 epochs straight == 1 epoch, interrupted, then --resume."""
    straight, _ = _run(_cfg(tmp_path, "straight", **RESUME_RUN))
    cfg = _cfg(tmp_path, "cut", **RESUME_RUN)
    _interrupting_evaluate(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg)
    monkeypatch.undo()
    assert resume_path(cfg.out).is_file() and load_checkpoint(cfg.out)[1]["epoch"] == 1
    resumed, lines = _run(_cfg(tmp_path, "cut", resume=True, **RESUME_RUN))
    assert any("resuming after epoch 1 of 2" in ln for ln in lines)
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    for k in a:
        np.testing.assert_array_equal(to_host(b[k]), to_host(a[k]), err_msg=k)
    keep = ("epoch", "lr", "loss", "train_acc", "test_acc")
    assert [{k: h[k] for k in keep} for h in resumed["history"]] == \
        [{k: h[k] for k in keep} for h in straight["history"]]
    assert resumed["best_acc"] == straight["best_acc"]
    head = load_checkpoint(cfg.out)[1]
    assert head["epoch"] == 2 and len(head["history"]) == 2


@needs_slice
def test_resume_refuses_other_settings_and_missing_state(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "r", **RESUME_RUN)
    with pytest.raises(CheckpointError, match="cannot resume: .*r.npz and .*r_resume.npz must both exist"):
        train(_cfg(tmp_path, "r", resume=True, **RESUME_RUN), log=lambda s: None)
    _interrupting_evaluate(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg)
    monkeypatch.undo()
    for change, shown in ((dict(lr=0.05), "lr=0.1"), (dict(seed=4), "seed=3"),
                          (dict(train_limit=96), "train_limit=64")):
        with pytest.raises(CheckpointError, match=rf"written with different settings \({shown}\)"):
            train(_cfg(tmp_path, "r", resume=True, **{**RESUME_RUN, **change}), log=lambda s: None)
    assert {"lr", "seed", "epochs", "model", "train_limit", "warmup", "init"} <= set(RESUME_KEYS)
    # a damaged optimiser state is a CheckpointError too, naming the file
    resume_path(cfg.out).write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="r_resume.npz is corrupt"):
        train(_cfg(tmp_path, "r", resume=True, **RESUME_RUN), log=lambda s: None)


def test_resume_state_file_sits_beside_the_checkpoint(tmp_path):
    assert resume_path(tmp_path / "runs" / "vgg.npz") == tmp_path / "runs" / "vgg_resume.npz"


@needs_slice
def test_cli_resume_flag(tmp_path, capsys, monkeypatch):
    out = tmp_path / "c.npz"
    args = ["--dataset", "cifar10-slice", "--epochs", "2", "--train-limit", "32", "--batch-size",
            "32", "--no-augment", "--out", str(out)]
    _interrupting_evaluate(monkeypatch)
    assert main(args) == 130                     # Ctrl-C: one line, exit code 130
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0
    text = capsys.readouterr().err
    assert "resuming after epoch 1 of 2" in text and "epoch   2/2" in text and "epoch   1/2" in text
    with np.load(resume_path(out)) as z:
        state = json.loads(bytes(z["__state__"]).decode())
    assert state["epoch"] == 2 and state["train_config"]["engine"] == "fast"   # the CLI's default


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_train_step_on_backend_agrees_with_numpy(xp, engine):
    """One short epoch of train_epoch (augmentation, normalisation, loss, backward, SGD) and
    the test accuracy with the network on the device: NumPy's loss, accuracy and weights."""
    from helpers import tiny_vgg
    from icsnn_np.fast.layers import accelerate
    from icsnn_np.optim import SGD
    from icsnn_np.io.preprocess import channel_stats

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, 12)
    mean, std = channel_stats(x)

    def run(xp_):
        model = tiny_vgg(0, widths=(16, 4), hw=8, classes=3).to(xp_)
        net = accelerate(model) if engine == "fast" else model
        opt = SGD(model, 0.05, 0.9, 5e-4)
        loss, acc = train_mod.train_epoch(net, opt, x, y, mean, std, xp_, np.random.default_rng(1),
                                          lambda bi: 0.05, True, 5)
        test = train_mod.evaluate(net, x, y, mean, std, xp_, batch_size=5)
        return loss, acc, test, [to_host(m.params[k]) for _, m, k in model.named_parameters()]

    got, want = run(xp), run(np)
    assert got[0] == pytest.approx(want[0], rel=1e-9) and got[1:3] == want[1:3]
    for a, b in zip(got[3], want[3]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
