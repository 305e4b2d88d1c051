"""Checkpoints: roundtrip, atomic writes, and a CheckpointError naming the file or tensor for
every kind of damage."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from icsnn_np.io.checkpoint import (FORMAT, VERSION, CheckpointError, bundled_models, check_state_dict,
                                 load_checkpoint, read_checkpoint, resolve_checkpoint, save_checkpoint)
from icsnn_np.models import build_model
from icsnn_np.runs.checkpoints import load_model

ARCH = "vgg_cpu"


@pytest.fixture(scope="module")
def net():
    return build_model(ARCH, seed=5)          # not the seed load_checkpoint builds with (0)


@pytest.fixture
def saved(tmp_path, net):
    return save_checkpoint(tmp_path / "ck.npz", net, ARCH, 10,
                           meta={"mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 3.0], "epoch": 7})


def write_npz(path, arrays, header=None):
    """A hand-made checkpoint file: ``arrays`` plus a JSON header (None: no header at all)."""
    if header is not None:
        arrays = {**arrays, "__meta__": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def header(**kw):
    return {"format": FORMAT, "version": VERSION, "arch": ARCH, "num_classes": 10, **kw}


def state(net):
    return {k: np.array(v) for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------- roundtrip
def test_roundtrip_keeps_weights_and_header(saved, net):
    model, head = load_checkpoint(saved, arch=ARCH)
    want = net.state_dict()
    got = model.state_dict()
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert head["arch"] == ARCH and head["num_classes"] == 10
    assert head["format"] == FORMAT and head["version"] == VERSION
    assert head["mean"] == [0.1, 0.2, 0.3] and head["std"] == [1.0, 2.0, 3.0]
    assert head["epoch"] == 7


def test_loaded_model_computes_what_the_saved_one_did(saved, net, rng):
    model, _ = load_checkpoint(saved)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(model.eval().forward(x), net.eval().forward(x))


def test_float16_storage_roundtrip(tmp_path, net):
    p16 = save_checkpoint(tmp_path / "half.npz", net, ARCH, 10, dtype=np.float16)
    p32 = save_checkpoint(tmp_path / "full.npz", net, ARCH, 10)
    with np.load(p16) as z:
        assert z["features.0.weight"].dtype == np.float16
    assert p16.stat().st_size < 0.75 * p32.stat().st_size
    model, _ = load_checkpoint(p16)
    for k, v in net.state_dict().items():
        got = model.state_dict()[k]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, v.astype(np.float16).astype(np.float32), err_msg=k)
        np.testing.assert_allclose(got, v, rtol=1e-3, atol=1e-4, err_msg=k)


def test_save_creates_missing_folders(tmp_path, net):
    p = save_checkpoint(tmp_path / "a" / "b" / "ck.npz", net, ARCH, 10)
    assert read_checkpoint(p)[0]["arch"] == ARCH


# --------------------------------------------------------------------------- atomic writes
def _failing_savez(monkeypatch):
    """np.savez_compressed that writes half a file, then fails (a full disk, a kill)."""
    def boom(f, **arrays):
        f.write(b"PK\x03\x04 partial zip that never ends")
        raise OSError("No space left on device")
    monkeypatch.setattr(np, "savez_compressed", boom)


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(saved, monkeypatch, net):
    before = saved.read_bytes()
    _failing_savez(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(saved, net, ARCH, 10)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    monkeypatch.undo()
    assert load_checkpoint(saved)[1]["epoch"] == 7


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch, net):
    _failing_savez(monkeypatch)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.npz", net, ARCH, 10)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("keep", [0.5, 0.9, 10 / 1e6, 0.0])
def test_truncated_file_names_the_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_garbage_bytes_are_a_checkpoint_error(tmp_path, rng):
    p = tmp_path / "garbage.npz"
    p.write_bytes(rng.bytes(5000))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p)
    assert str(p) in str(info.value)


def test_corrupt_compressed_data_is_a_checkpoint_error(saved):
    """Damage inside a member's deflate stream (the zip directory intact) raises zlib.error."""
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("features.0.weight.npy")
    # local header: 30 bytes, then the name and the extra field, then the compressed data
    h = info.header_offset
    name_len = int.from_bytes(data[h + 26:h + 28], "little")
    extra_len = int.from_bytes(data[h + 28:h + 30], "little")
    start = h + 30 + name_len + extra_len
    data[start:start + 8] = b"\xff" * 8                       # deflate block type 3: invalid
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt") as err:
        load_checkpoint(saved)
    assert str(saved) in str(err.value)


def test_a_plain_npy_array_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "array.npz"
    with open(p, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p)
    assert str(p) in str(info.value)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")


def test_npz_without_header_is_not_a_checkpoint(tmp_path, net):
    p = write_npz(tmp_path / "plain.npz", state(net), header=None)
    with pytest.raises(CheckpointError, match="no __meta__ header"):
        load_checkpoint(p)


def test_foreign_format_is_rejected(tmp_path, net):
    p = write_npz(tmp_path / "other.npz", state(net), header(format="someone-else"))
    with pytest.raises(CheckpointError, match="not an icsnn-np checkpoint"):
        load_checkpoint(p)


def test_newer_version_asks_for_an_upgrade(tmp_path, net):
    p = write_npz(tmp_path / "future.npz", state(net), header(version=VERSION + 1))
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(p)


def test_nan_tensor_is_named(tmp_path, net):
    arrays = state(net)
    arrays["features.2.bias"][1] = np.nan
    p = write_npz(tmp_path / "nan.npz", arrays, header())
    with pytest.raises(CheckpointError, match="features.2.bias"):
        load_checkpoint(p)


# --------------------------------------------------------------------------- wrong model
def test_wrong_arch_is_a_checkpoint_error(saved):
    with pytest.raises(CheckpointError, match=r"'vgg_cpu' model, not 'resnet20'"):
        load_checkpoint(saved, arch="resnet20")


def test_unknown_arch_in_header_is_a_checkpoint_error(tmp_path, net):
    p = write_npz(tmp_path / "odd.npz", state(net), header(arch="vgg99"))
    with pytest.raises(CheckpointError, match="vgg99"):
        load_checkpoint(p)


def test_missing_tensor_is_named(tmp_path, net):
    arrays = state(net)
    del arrays["features.7.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor 'features.7.weight'"):
        check_state_dict(net, arrays)
    p = write_npz(tmp_path / "missing.npz", arrays, header())
    with pytest.raises(CheckpointError, match=r"missing tensor 'features.7.weight'") as info:
        load_checkpoint(p)
    assert str(p) in str(info.value)


def test_unexpected_tensor_is_named(tmp_path, net):
    arrays = state(net)
    arrays["features.99.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'features.99.weight'"):
        check_state_dict(net, arrays)
    p = write_npz(tmp_path / "extra.npz", arrays, header())
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'features.99.weight'"):
        load_checkpoint(p)


def test_qcfs_weights_under_a_relu_header_are_named_as_such(tmp_path):
    """A QCFS checkpoint whose header lost ``activation``/``levels`` (as train once wrote
    one): named for what it is, not as one unexpected tensor."""
    _, arrays = read_checkpoint(bundled_models()["vgg_cpu_qcfs"])
    p = write_npz(tmp_path / "lost.npz", arrays, header())
    with pytest.raises(CheckpointError, match=r"a QCFS checkpoint \(it holds λ: .*\.lam.*\) under "
                                              r"a ReLU header") as info:
        load_checkpoint(p)
    assert str(p) in str(info.value)


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path, net):
    arrays = state(net)
    arrays["classifier.0.weight"] = arrays["classifier.0.weight"][:, :-1]
    msg = r"'classifier.0.weight' has shape \(10, 2047\), model expects \(10, 2048\)"
    with pytest.raises(CheckpointError, match=msg):
        check_state_dict(net, arrays)
    p = write_npz(tmp_path / "shape.npz", arrays, header())
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(p)


def test_check_state_dict_accepts_a_matching_dict(net):
    check_state_dict(net, state(net))          # no error
    with pytest.raises(CheckpointError):
        check_state_dict(net, {})


@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_every_bundled_model_is_what_its_header_says(name):
    """A bundled model loads by name, carries the p chosen for it (and how), is stored as
    float16, and classifies the bundled slice's 1,000 test images (official test images,
    100 per class) about as well as its header's full-test-set accuracy: a wrong or
    mismatched file would land near 10 %."""
    from icsnn_np.io.checkpoint import check_fits_data, resolve_checkpoint
    from icsnn_np.io.data import load_dataset
    from icsnn_np.runs.evaluate import ann_accuracy
    from icsnn_np.io.preprocess import normalize

    model, header = load_model(name)                # QCFS too (runs/checkpoints.py)
    assert header["stored_as"] == "float16"
    if header.get("activation", "relu") == "qcfs":
        # a QCFS model converts with V_th = its trained lambda: no p; its name says so
        assert name == f"{header['arch']}_qcfs" and header["levels"] >= 1 and "p" not in header
    else:
        assert header["arch"] == name
        assert 0 < header["p"] <= 1 and "held-out training images" in header["p_chosen_by"]
    sl = load_dataset("cifar10-slice")
    mean, std = check_fits_data(header, sl.num_classes, "cifar10-slice", name)
    acc = ann_accuracy(model, normalize(sl.x_test, mean, std, np), sl.y_test)
    se = 100 * np.sqrt(header["test_acc"] * (1 - header["test_acc"]) / len(sl.y_test))
    assert abs(acc - 100 * header["test_acc"]) < 4 * se + 1, (acc, header["test_acc"])


def test_a_qcfs_checkpoint_needs_the_loader_that_knows_qcfs():
    """io knows layers, not methods: its loader names the one that rebuilds QCFS models."""
    with pytest.raises(CheckpointError, match="qcfs activation: load it with icsnn_np.runs.checkpoints"):
        load_checkpoint(resolve_checkpoint("vgg_cpu_qcfs"))
    model, header = load_model("vgg_cpu_qcfs")
    assert header["activation"] == "qcfs" and any(k.endswith(".lam") for k in model.state_dict())
