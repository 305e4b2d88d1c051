"""scripts/bundle_model.py stores what is true of the model it bundles: no p for a QCFS
model (its thresholds are its λ), a validation note only when one is given, and the
header's accuracy of the float16 weights it ships, measured. CIFAR-10 is stood in for by the
bundled slice, so these run anywhere."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import load_script, write_test_batch
from icsnn_np.io.checkpoint import bundled_models
from icsnn_np.runs.checkpoints import load_model as load_checkpoint
from icsnn_np.io.data import SLICE_PATH, load_dataset
from icsnn_np.runs.training import evaluate

bundle_model = load_script("bundle_model")
needs_slice = pytest.mark.skipif(not SLICE_PATH.is_file(), reason=f"{SLICE_PATH} not built yet")


@pytest.fixture
def slice_as_cifar10(monkeypatch):
    real = load_dataset
    monkeypatch.setattr(bundle_model, "load_dataset", lambda name, *a, **k: real("cifar10-slice"))
    return real("cifar10-slice")


def test_qcfs_model_refuses_a_p(tmp_path, capsys):
    rc = bundle_model.main(["vgg_cpu_qcfs", "--p", "0.5", "--out", str(tmp_path / "b.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a QCFS model (L = 8): its thresholds are its trained λ" in err
    assert not list(tmp_path.iterdir())


@needs_slice
def test_p_without_a_named_validation_says_it_was_given_by_hand(tmp_path, slice_as_cifar10):
    out = tmp_path / "b.npz"
    assert bundle_model.main(["vgg_cpu", "--p", "0.99", "--out", str(out)]) == 0
    _, h = load_checkpoint(out)
    assert h["p"] == 0.99 and "held-out" not in h["p_chosen_by"]
    assert h["p_chosen_by"].startswith("given by hand")


@needs_slice
def test_qcfs_bundle_has_no_p_and_its_accuracy_is_the_float16_weights(tmp_path, slice_as_cifar10):
    out = tmp_path / "q.npz"
    assert bundle_model.main([str(bundled_models()["vgg_cpu_qcfs"]), "--out", str(out)]) == 0
    model, h = load_checkpoint(out)
    assert "p" not in h and "p_chosen_by" not in h and h["stored_as"] == "float16"
    ds = slice_as_cifar10
    acc = evaluate(model, ds.x_test, ds.y_test, np.float32(h["mean"]), np.float32(h["std"]), np)
    assert h["test_acc"] == round(acc, 6)


@needs_slice
def test_a_folder_with_the_test_batch_alone_suffices(tmp_path, capsys):
    """Only the test set is measured: the training batches are not asked for."""
    sl = load_dataset("cifar10-slice")
    write_test_batch(tmp_path / "data", sl.x_test[:200], sl.y_test[:200])
    out = tmp_path / "b.npz"
    assert bundle_model.main(["vgg_cpu", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert load_checkpoint(out)[1]["stored_as"] == "float16"
    assert "float16: CIFAR-10 test" in capsys.readouterr().out
