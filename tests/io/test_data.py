"""Tests of icsnn_np.io.data: the four official CIFAR formats (as folders and as .tar.gz), integrity
errors, download failure, the bundled slice, real CIFAR-10 (when present). (Normalisation,
augmentation and batching: test_preprocess.py.)

Small archives are written byte by byte from the format descriptions on the CIFAR page,
independently of the loader (helpers.make_cifar, shared with test_data_test_only.py). Nothing touches the network.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import FOLDERS, NAMES10, make_cifar, py2_pickle

from icsnn_np.io import data
from icsnn_np.io.data import DATA_ENV, Dataset, DatasetError, default_data_dir, load_dataset
from icsnn_np.io.preprocess import channel_stats

REPO = Path(__file__).resolve().parents[2]


def assert_same(got: Dataset, want: Dataset):
    for field in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        np.testing.assert_array_equal(a, b, err_msg=field)
    assert got.classes == want.classes and got.name == want.name


def real_cifar_dir() -> Path | None:
    """The folder holding the real cifar-10-batches-bin: $ICSNN_DATA, else ../shared/data."""
    for d in (os.environ.get(DATA_ENV), REPO.parent / "shared" / "data"):
        if d and (Path(d) / "cifar-10-batches-bin" / "test_batch.bin").is_file():
            return Path(d)
    return None


# --------------------------------------------------------------------------- formats
KINDS = list(FOLDERS)


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "targz"])
@pytest.mark.parametrize("kind", KINDS)
def test_official_formats_load_exactly(tmp_path, kind, archive):
    want = make_cifar(tmp_path, kind, archive)
    got = load_dataset(want.name, tmp_path)
    assert_same(got, want)
    assert got.num_classes == (10 if want.name == "cifar10" else 100)
    assert got.x_train.flags.c_contiguous and got.x_train.dtype == np.uint8


def test_binary_pixel_layout_by_hand(tmp_path):
    """Record = label, then R, G, B planes of 32x32 in row-major order -> x[n, c, row, col]."""
    rec = bytearray(1 + 3072)
    rec[0] = 7
    rec[1 + 0 * 1024 + 2 * 32 + 5] = 200   # red, row 2, column 5
    rec[1 + 1 * 1024 + 0 * 32 + 31] = 150  # green, row 0, column 31
    rec[1 + 2 * 1024 + 31 * 32 + 0] = 77   # blue, row 31, column 0
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(bytes(rec))
    (folder / "batches.meta.txt").write_text("\n".join(NAMES10))
    x = load_dataset("cifar10", tmp_path).x_test
    assert x.shape == (1, 3, 32, 32) and x.sum() == 200 + 150 + 77
    assert x[0, 0, 2, 5] == 200 and x[0, 1, 0, 31] == 150 and x[0, 2, 31, 0] == 77


def test_cifar100_binary_uses_fine_label(tmp_path):
    want = make_cifar(tmp_path, "c100bin")
    assert (want.y_train // 5 != want.y_train).any()  # coarse byte differs from fine byte
    np.testing.assert_array_equal(load_dataset("cifar100", tmp_path).y_train, want.y_train)


def test_python3_pickles_also_load(tmp_path):
    """Files re-pickled under Python 3 (protocol 5, str keys) load too."""
    want = make_cifar(tmp_path, "c100py")
    folder = tmp_path / "cifar-100-python"
    for f in ("train", "test", "meta"):
        d = pickle.loads((folder / f).read_bytes(), encoding="bytes")
        d = {k.decode(): v for k, v in d.items()}
        (folder / f).write_bytes(pickle.dumps(d, protocol=5))
    assert_same(load_dataset("cifar100", tmp_path), want)


def test_folder_preferred_over_archive_and_folder_as_data_dir(tmp_path):
    want = make_cifar(tmp_path, "c10bin", archive=False, seed=1)
    make_cifar(tmp_path, "c10py", archive=True, seed=2)
    assert_same(load_dataset("cifar10", tmp_path), want)
    assert_same(load_dataset("cifar10", tmp_path / "cifar-10-batches-bin"), want)


# --------------------------------------------------------------------------- integrity errors
def test_truncated_binary_names_the_file(tmp_path):
    make_cifar(tmp_path, "c10bin")
    f = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="data_batch_3.bin.*(truncated|download)"):
        load_dataset("cifar10", tmp_path)


def test_truncated_archive(tmp_path):
    make_cifar(tmp_path, "c10py", archive=True)
    f = tmp_path / "cifar-10-python.tar.gz"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_pickle(tmp_path, damage):
    make_cifar(tmp_path, "c100py")
    f = tmp_path / "cifar-100-python" / "test"
    f.write_bytes(f.read_bytes()[:500] if damage == "truncate" else b"\x80\x02not a pickle")
    with pytest.raises(DatasetError, match=r"cifar-100-python/test\b"):
        load_dataset("cifar100", tmp_path)


def test_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    make_cifar(tmp_path, "c10py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(py2_pickle({b"data": Evil()}))
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_label_out_of_range_and_missing_file(tmp_path):
    make_cifar(tmp_path, "c10bin")
    f = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    blob = bytearray(f.read_bytes())
    blob[0] = 10
    f.write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match="test_batch.bin.*labels outside"):
        load_dataset("cifar10", tmp_path)
    f.unlink()
    with pytest.raises(DatasetError, match="test_batch.bin is missing"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("kind, archive, key", [
    ("c10bin", False, "cifar-10-batches-bin/data_batch_2.bin"),
    ("c10py", False, "cifar-10-batches-py/test_batch"),
    ("c10py", True, "cifar-10-python.tar.gz")])
def test_official_size_with_wrong_hash_is_rejected(tmp_path, monkeypatch, kind, archive, key):
    """A file with an official name and the official size must match the official hash.

    Faking a 30 MB file is avoided by pinning the fixture's own size with a wrong digest."""
    make_cifar(tmp_path, kind, archive)
    path = tmp_path / key
    size, md5 = path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(data._PINS, key, data._Pin("md5", "0" * 32, size))
    with pytest.raises(DatasetError, match=f"{path.name}: MD5 {md5} differs.*download it again"):
        load_dataset("cifar10", tmp_path)
    load_dataset("cifar10", tmp_path, verify=False)  # structure alone is fine
    monkeypatch.setitem(data._PINS, key, data._Pin("md5", md5, size))
    load_dataset("cifar10", tmp_path)  # the right digest loads
    monkeypatch.setitem(data._PINS, key, data._Pin("md5", "0" * 32, size + 1))
    load_dataset("cifar10", tmp_path)  # another size: not claiming to be official


def test_file_digest_matches_hashlib(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(3 << 20 | 123))  # spans several 1 MiB chunks
    assert data.file_digest(f, "sha1") == hashlib.sha1(f.read_bytes()).hexdigest()
    assert data.file_digest(f, "md5") == hashlib.md5(f.read_bytes()).hexdigest()


def test_real_sizes_trigger_the_check_small_ones_do_not(tmp_path):
    """Small files (fixtures) under official names are not hash-checked; the pins' sizes are
    the official ones."""
    f = tmp_path / "data_batch_1.bin"
    f.write_bytes(b"\0" * 3073)
    data.check_official(f, "cifar-10-batches-bin/data_batch_1.bin")  # no error: not full size
    assert data._PINS["cifar-10-batches-bin/test_batch.bin"].size == 10000 * 3073
    assert data._PINS["cifar-10-python.tar.gz"].digest == "c58f30108f718f92721af3b95e74349a"


# --------------------------------------------------------------------------- missing / download
def test_missing_data_message(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar100", tmp_path / "nowhere")
    msg = str(e.value)
    assert "cifar-100-python.tar.gz" in msg and str(tmp_path / "nowhere") in msg
    assert "download=True" in msg and DATA_ENV in msg


def test_download_offline_fails_fast(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    t0 = time.perf_counter()
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", tmp_path, download=True)
    assert time.perf_counter() - t0 < 2
    msg = str(e.value)
    assert "download" in msg and "no network" in msg
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


def test_download_writes_checked_archive(tmp_path, monkeypatch):
    """The download path end to end, with urlopen serving a fixture archive."""
    want = make_cifar(tmp_path / "src", "c10py", archive=True)
    blob = (tmp_path / "src" / "cifar-10-python.tar.gz").read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(blob))
    dest = tmp_path / "dl"
    with pytest.raises(DatasetError, match="MD5"):  # fixture != official archive
        load_dataset("cifar10", dest, download=True)
    assert list(dest.iterdir()) == []
    monkeypatch.setitem(data._PINS, "cifar-10-python.tar.gz",
                        data._Pin("md5", hashlib.md5(blob).hexdigest(), len(blob)))
    assert_same(load_dataset("cifar10", dest, download=True), want)
    assert [p.name for p in dest.iterdir()] == ["cifar-10-python.tar.gz"]


def test_unknown_name():
    with pytest.raises(ValueError, match="cifar10.*cifar100.*cifar10-slice"):
        load_dataset("mnist")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert default_data_dir() == tmp_path / "c" / "icsnn_np"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "icsnn_np"


# --------------------------------------------------------------------------- the bundled slice
def test_bundled_slice():
    ds = load_dataset("cifar10-slice")
    assert ds.name == "cifar10-slice" and ds.classes == NAMES10
    assert ds.x_train.shape == (1000, 3, 32, 32) and ds.x_test.shape == (1000, 3, 32, 32)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert (np.bincount(ds.y_train, minlength=10) == 100).all()
    assert (np.bincount(ds.y_test, minlength=10) == 100).all()
    with np.load(data.SLICE_PATH, allow_pickle=False) as z:
        tr, te, note = z["train_index"], z["test_index"], str(z["note"])
    assert (np.diff(tr) > 0).all() and (np.diff(te) > 0).all()  # original order kept
    assert "aadd24acce27caa71bf4b10992e9e7b2d74c2540" in note


def test_slice_equals_real_images():
    root = real_cifar_dir()
    if root is None:
        pytest.skip(f"real CIFAR-10 not found (set ${DATA_ENV} or put ../shared/data)")
    ds = load_dataset("cifar10-slice")
    with np.load(data.SLICE_PATH, allow_pickle=False) as z:
        tr, te = z["train_index"], z["test_index"]
    # Independent raw read: record r of the 50,000 lives in file r // 10000 at r % 10000.
    folder = root / "cifar-10-batches-bin"
    recs = [np.fromfile(folder / f"data_batch_{i}.bin", np.uint8).reshape(-1, 3073)
            for i in range(1, 6)]
    train = np.concatenate(recs)[tr]
    test = np.fromfile(folder / "test_batch.bin", np.uint8).reshape(-1, 3073)[te]
    np.testing.assert_array_equal(ds.x_train.reshape(1000, -1), train[:, 1:])
    np.testing.assert_array_equal(ds.y_train, train[:, 0])
    np.testing.assert_array_equal(ds.x_test.reshape(1000, -1), test[:, 1:])
    np.testing.assert_array_equal(ds.y_test, test[:, 0])
    # the rule: first 100 per class, so every earlier image of that class is in the slice
    all_y = np.concatenate(recs)[:, 0]
    for c in range(10):
        assert (np.flatnonzero(all_y == c)[:100] == tr[ds.y_train == c]).all()


@pytest.mark.slow
def test_real_cifar10():
    root = real_cifar_dir()
    if root is None:
        pytest.skip(f"real CIFAR-10 not found (set ${DATA_ENV} or put ../shared/data)")
    ds = load_dataset("cifar10", root)  # verifies the official SHA-1s
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    assert (np.bincount(ds.y_train) == 5000).all() and (np.bincount(ds.y_test) == 1000).all()
    assert ds.classes == NAMES10
    assert ds.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # frog, truck, truck, ...
    assert ds.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    mean, std = channel_stats(ds.x_train)  # the well-known CIFAR-10 statistics
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=1e-3)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=1e-3)
