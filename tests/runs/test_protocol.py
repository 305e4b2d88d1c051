"""protocol.py: calibration images are a seeded sample of the training set with held-out
validation images disjoint from them; test images are the first n or a seeded sample."""
import numpy as np
import pytest

from icsnn_np.runs import protocol
from icsnn_np.runs.protocol import SUBSETS, calibration_split


def test_calibration_split_is_seeded_sorted_and_disjoint():
    cal, val = calibration_split(1000, 40, seed=3, n_val=25)
    assert len(cal) == 40 and len(val) == 25
    assert np.all(np.diff(cal) > 0) and np.all(np.diff(val) > 0)         # sorted, no repeats
    assert not set(cal) & set(val) and cal.max() < 1000 and cal.min() >= 0
    again, _ = calibration_split(1000, 40, seed=3)
    np.testing.assert_array_equal(again, cal)                          # n_val does not move it
    other, _ = calibration_split(1000, 40, seed=4)
    assert not np.array_equal(other, cal)
    assert not np.array_equal(cal, np.arange(40))                      # a sample, not the first
    assert calibration_split(5, 5, seed=0)[0].tolist() == [0, 1, 2, 3, 4]


def test_test_indices_first_or_random():
    np.testing.assert_array_equal(protocol.test_indices(100, 7), np.arange(7))
    r = protocol.test_indices(100, 7, "random", seed=1)
    assert len(set(r)) == 7 and np.all(np.diff(r) > 0) and r.max() < 100
    np.testing.assert_array_equal(r, protocol.test_indices(100, 7, "random", seed=1))
    assert not np.array_equal(r, protocol.test_indices(100, 7, "random", seed=2))
    assert SUBSETS == ("first", "random")


@pytest.mark.parametrize("call, match", [
    (lambda: calibration_split(10, 8, 0, n_val=3), "8 calibration \\+ 3 validation images: the training set has only 10"),
    (lambda: calibration_split(10, 0, 0), "calibration images must be an integer >= 1"),
    (lambda: calibration_split(10, 2, 0, n_val=-1), "validation images must be an integer >= 0"),
    (lambda: protocol.test_indices(10, 11), "11 test images asked for: the test set has only 10"),
    (lambda: protocol.test_indices(10, 0), "test images must be an integer >= 1"),
    (lambda: protocol.test_indices(10, 3, "last"), "unknown test subset 'last'; choose one of first, random"),
])
def test_bad_requests_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
