"""The CIFAR-10 test batch alone (what the GPU check carries to the device machine):
``load_dataset(..., test_only=True)`` reads the test file, and the meta file where it is,
from a folder without training batches, in both official formats, folder or archive."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import FOLDERS, NAMES10, make_cifar, write_test_batch

from icsnn_np.io.data import DatasetError, load_dataset


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_a_test_batch_alone_built_from_the_bundled_slice_loads_test_only(tmp_path, fmt):
    """What the GPU check carries: test_batch.bin (or the python test_batch) alone, no training
    batches, no meta file; test_only=True reads it, x_train empty, the official class names."""
    sl = load_dataset("cifar10-slice")
    f = write_test_batch(tmp_path / "alone", sl.x_test, sl.y_test, fmt)
    if fmt == "bin":
        assert f.stat().st_size == 1000 * 3073            # the official record layout
    ds = load_dataset("cifar10", tmp_path / "alone", test_only=True)
    assert ds.name == "cifar10" and ds.classes == NAMES10 and ds.source == str(tmp_path / "alone")
    np.testing.assert_array_equal(ds.x_test, sl.x_test)
    np.testing.assert_array_equal(ds.y_test, sl.y_test)
    assert ds.x_train.shape == (0, 3, 32, 32) and ds.x_train.dtype == np.uint8
    assert ds.y_train.shape == (0,) and ds.y_train.dtype == np.int64
    # in its official folder too, and a full load says what is missing and the way out
    folder = tmp_path / ("cifar-10-batches-bin" if fmt == "bin" else "cifar-10-batches-py")
    write_test_batch(folder, sl.x_test[:7], sl.y_test[:7], fmt)
    np.testing.assert_array_equal(load_dataset("cifar10", tmp_path, test_only=True).x_test,
                                  sl.x_test[:7])
    with pytest.raises(DatasetError, match=r"data_batch_1(\.bin)? is missing.*test_only.*"
                                           r"--calib-from cifar10-slice"):
        load_dataset("cifar10", tmp_path / "alone")


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "targz"])
@pytest.mark.parametrize("kind", ["c10bin", "c10py", "c100py"])
def test_test_only_reads_the_test_file_and_meta_of_a_full_set(tmp_path, kind, archive):
    want = make_cifar(tmp_path, kind, archive=archive, seed=4)
    folder = tmp_path / FOLDERS[kind][0]
    if not archive:                                    # training files are not even opened
        for f in folder.glob("*"):
            if "data_batch" in f.name or f.name == "train":
                f.unlink()
    ds = load_dataset(want.name, tmp_path, test_only=True)
    np.testing.assert_array_equal(ds.x_test, want.x_test)
    np.testing.assert_array_equal(ds.y_test, want.y_test)
    assert ds.classes == want.classes and len(ds.x_train) == len(ds.y_train) == 0
    if kind == "c100py" and not archive:               # no official names to fall back on
        (folder / "meta").unlink()
        with pytest.raises(DatasetError, match="meta is missing"):
            load_dataset("cifar100", tmp_path, test_only=True)
