"""Training (runs/training.py) chooses nothing on the test set and keeps what a QCFS
checkpoint says: the validation split held out of the training images (its size and seed in
the header), ``_best`` chosen on it alone; ``--init-from`` a QCFS checkpoint goes on as QCFS
at its own L or is refused in one line."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from icsnn_np.beyond.qcfs import qcfs_layers
from icsnn_np.cli.train import main
from icsnn_np.runs.checkpoints import load_model as load_checkpoint
from icsnn_np.io.data import SLICE_PATH, load_dataset
from icsnn_np.runs import training as train_mod
from icsnn_np.runs.training import TrainConfig, evaluate, train

needs_slice = pytest.mark.skipif(not SLICE_PATH.is_file(), reason=f"{SLICE_PATH} not built yet")


def _cfg(tmp_path, name, **kw):
    base = dict(dataset="cifar10-slice", model="vgg_cpu", epochs=2, train_limit=64, batch_size=32,
                milestones=(9,), out=str(tmp_path / f"{name}.npz"), engine="fast", augment=False)
    return TrainConfig(**{**base, **kw})


def _predictions(path, x):
    model, h = load_checkpoint(path)
    xb = train_mod.normalize(x, np.float32(h["mean"]), np.float32(h["std"]), np)
    model.eval()
    return model.forward(xb).argmax(axis=1)


# --------------------------------------------------------------------------- validation split
def test_validation_split_is_held_out_seeded_and_refuses_taking_everything():
    from icsnn_np.runs.training import validation_split  # noqa: PLC0415 - new: fails alone on older code
    tr, va = validation_split(1000, None, 0)
    assert len(va) == 100 and len(tr) == 900 and not set(tr) & set(va)
    assert np.array_equal(va, validation_split(1000, None, 0)[1])
    assert not np.array_equal(va, validation_split(1000, None, 1)[1])
    with pytest.raises(ValueError, match="leaves no training image"):
        validation_split(10, 10, 0)


@needs_slice
def test_header_names_the_validation_split_and_its_images_are_not_trained_on(tmp_path, monkeypatch):
    seen = []
    real = train_mod.train_epoch
    monkeypatch.setattr(train_mod, "train_epoch", lambda net, opt, x, *a, **k: seen.append(x.copy())
                        or real(net, opt, x, *a, **k))
    lines = []
    res = train(_cfg(tmp_path, "v", epochs=1, val_size=50, val_seed=3, train_limit=None), log=lines.append)
    _, head = load_checkpoint(res["best"])
    assert head["validation"]["images"] == 50 and head["validation"]["seed"] == 3
    assert "validation accuracy" in head["validation"]["best_chosen_by"]
    assert 0 <= head["val_acc"] <= 1 and head["history"][0]["val_acc"] == head["val_acc"]
    ds = load_dataset("cifar10-slice")
    _, va = train_mod.validation_split(len(ds.x_train), 50, 3)
    trained = {x.tobytes() for x in seen[0]}
    assert len(seen[0]) == len(ds.x_train) - 50
    assert not any(ds.x_train[i].tobytes() in trained for i in va)
    assert any("50 more held out for validation, seed 3" in ln for ln in lines)


@needs_slice
def test_best_does_not_move_when_the_test_set_is_swapped(tmp_path, monkeypatch):
    """Two test sets made so that each favours another epoch (labels = the epoch-1 model's
    predictions, then the epoch-2 model's): chosen on the test set, _best would follow them."""
    ds = load_dataset("cifar10-slice")
    train(_cfg(tmp_path, "one", epochs=1), log=lambda s: None)     # = epoch 1 of the runs below
    favour_1 = _predictions(tmp_path / "one.npz", ds.x_test)
    bests = []
    for name, labels in (("a", favour_1), ("b", None)):
        if labels is None:                                         # epoch 2's own predictions
            labels = _predictions(tmp_path / "a.npz", ds.x_test)
            assert not np.array_equal(labels, favour_1)            # the two test sets differ
        swapped = dataclasses.replace(ds, y_test=np.asarray(labels, np.int64))
        monkeypatch.setattr(train_mod, "load_dataset", lambda *a, s=swapped, **k: s)
        res = train(_cfg(tmp_path, name), log=lambda s: None)
        bests.append(load_checkpoint(res["best"]))
    (ma, ha), (mb, hb) = bests
    assert ha["epoch"] == hb["epoch"] and ha["val_acc"] == hb["val_acc"]
    for k, v in ma.state_dict().items():
        np.testing.assert_array_equal(v, mb.state_dict()[k], err_msg=k)


# --------------------------------------------------------------------------- QCFS checkpoints
def test_qcfs_checkpoint_without_activation_qcfs_is_refused(tmp_path, capsys):
    rc = main(["--init-from", "vgg_cpu_qcfs", "--dataset", "cifar10-slice", "--epochs", "1",
               "--train-limit", "32", "--out", str(tmp_path / "q.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a QCFS checkpoint (L = 8" in err and "--activation qcfs --levels 8" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_qcfs_checkpoint_at_another_L_is_refused(tmp_path, capsys):
    rc = main(["--activation", "qcfs", "--levels", "4", "--init-from", "vgg_cpu_qcfs", "--dataset",
               "cifar10-slice", "--epochs", "1", "--train-limit", "32", "--out", str(tmp_path / "q.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "trained as QCFS at L = 8: continue it with --levels 8" in err
    assert not list(tmp_path.iterdir())


@needs_slice
def test_qcfs_checkpoint_goes_on_at_its_L_and_its_header_accuracy_is_measured(tmp_path):
    res = train(_cfg(tmp_path, "q8", epochs=1, lr=0.001, activation="qcfs", levels=8,
                     init_from="vgg_cpu_qcfs"), log=lambda s: None)
    model, head = load_checkpoint(res["out"])
    assert head["activation"] == "qcfs" and head["levels"] == 8
    assert {m.levels for m in qcfs_layers(model)} == {8}
    ds = load_dataset("cifar10-slice")
    acc = evaluate(model, ds.x_test, ds.y_test, np.float32(head["mean"]), np.float32(head["std"]), np)
    assert acc == head["test_acc"]


def test_continuing_a_qcfs_checkpoint_takes_its_own_L():
    """``--activation qcfs --init-from <QCFS checkpoint>`` without ``--levels``: its L (8)."""
    from icsnn_np.runs.training import TrainConfig
    cfg = TrainConfig(dataset="cifar10-slice", activation="qcfs", init_from="vgg_cpu_qcfs",
                      epochs=1, out="runs/never_written.npz").validate()
    assert cfg.levels == 8
    with pytest.raises(ValueError, match="--levels goes with --activation qcfs"):
        TrainConfig(dataset="cifar10-slice", activation="qcfs", epochs=1,
                    out="runs/never_written.npz").validate()
