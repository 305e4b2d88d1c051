"""Which images calibrate and which measure: one protocol for the demo, reproduce and tutorials.

* **Calibration images** (threshold balancing, Alg. 2): a seeded sample of the *training*
  set, never test images, so nothing is tuned on what is reported.
* **Held-out validation images**: the next training images of the same seeded permutation,
  disjoint from the calibration sample, for choosing settings (p, readings) without the
  test set. The network saw them in training: compare *losses* against the ANN there.
* **Test images**: the first n of the test set (the default, as the README's tables), or a
  seeded random sample of n.

The same seed and counts give the same images everywhere, so the same flags print the same
numbers in ``demo`` and ``reproduce``.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_choice
from .checks import check_count
from ..io.preprocess import normalize

SUBSETS = ("first", "random")


def calibration_split(n_train: int, n_calib: int, seed: int, n_val: int = 0):
    """Sorted indices of ``n_calib`` calibration images (a seeded sample of ``n_train``
    training images) and of ``n_val`` held-out validation images (the next ones of the same
    permutation, disjoint from the calibration sample)."""
    check_count(n_calib, "the number of calibration images")
    check_count(n_val, "the number of validation images", minimum=0)
    if n_calib + n_val > n_train:
        raise ValueError(f"{n_calib} calibration + {n_val} validation images: the training set "
                         f"has only {n_train}")
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[:n_calib]), np.sort(perm[n_calib:n_calib + n_val])


def test_indices(n_test_set: int, n: int, subset: str = "first", seed: int = 0):
    """Indices of the ``n`` test images to measure on: the first n, or a seeded random
    sample of n (sorted)."""
    check_choice(subset, SUBSETS, "test subset")
    check_count(n, "the number of test images")
    if n > n_test_set:
        raise ValueError(f"{n} test images asked for: the test set has only {n_test_set}")
    if subset == "first":
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 1]).choice(n_test_set, n, replace=False))


def evaluation_images(ds, mean, std, xp, n_calib: int, seed: int, n_test: int,
                      subset: str = "first", validation: int = 0):
    """The protocol's images of dataset ``ds``, normalised on ``xp``: (x_calib, x_eval,
    y_eval, what the evaluation images are, in words). ``validation`` N > 0 measures on N
    held-out training images instead of the test set."""
    cal, val = calibration_split(len(ds.x_train), n_calib, seed, validation)
    x_calib = normalize(ds.x_train[cal], mean, std, xp)
    if validation:
        return (x_calib, normalize(ds.x_train[val], mean, std, xp), ds.y_train[val],
                f"{validation} held-out {ds.name} training images (not used for calibration)")
    idx = test_indices(len(ds.x_test), n_test, subset, seed)
    data = (f"the first {n_test}" if subset == "first" else
            f"{n_test} randomly drawn (seed {seed})") + f" {ds.name} test images"
    return x_calib, normalize(ds.x_test[idx], mean, std, xp), ds.y_test[idx], data
