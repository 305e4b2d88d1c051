"""Bad data (icsnn_np.io.data, io.preprocess; issue 14 and 25): a missing dataset, repacked
archives whose content is not the official one, and images or statistics that normalize
refuses. The shared cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from bad_input import NAN, INF, Cli, check_cli_case, replaced, Api, check_api_case

from icsnn_np.io.preprocess import normalize


CLI = [
    Cli("demo missing dataset", "demo", ["--dataset", "cifar10", "--data-dir", "{tmp}/nodata"], 2,
        "cifar10 not found in"),
    Cli("train missing dataset", "train", ["--dataset", "cifar10", "--data-dir", "{tmp}/nodata"], 2,
        "--download"),
    Cli("reproduce missing dataset", "reproduce", ["--dataset", "cifar10", "--data-dir", "{tmp}/nodata"], 2,
        "--download"),
    Cli("repacked binary archive, test_batch.bin of official size altered", "demo",
        ["--dataset", "cifar10", "--data-dir", "{c10bin}"], 2,
        "member cifar-10-batches-bin/test_batch.bin: SHA1"),
    Cli("repacked binary archive, test_batch.bin one record short and altered", "demo",
        ["--dataset", "cifar10", "--data-dir", "{c10short}"], 2,
        "member cifar-10-batches-bin/test_batch.bin: SHA1"),
    Cli("repacked python archive, test_batch of official size altered", "demo",
        ["--dataset", "cifar10", "--data-dir", "{c10py}"], 2,
        "member cifar-10-batches-py/test_batch: MD5"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


API = [
    # normalisation
    Api("normalize: float pixels (NaN among them)", lambda e: normalize(
        replaced(e.raw.astype(float), (0, 0, 0, 0), NAN), [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images, uint8 pixels 0..255, got float64"),
    Api("normalize: NaN mean", lambda e: normalize(e.raw, [NAN, 0.5, 0.5], [0.25] * 3), ValueError,
        "contain NaN or inf"),
    Api("normalize: inf std", lambda e: normalize(e.raw, [0.5] * 3, [0.25, INF, 0.25]), ValueError,
        "contain NaN or inf"),
    Api("normalize: std = 0", lambda e: normalize(e.raw, [0.5] * 3, [0.25, 0.0, 0.25]), ValueError,
        "has a value <= 0"),
    Api("normalize: std < 0", lambda e: normalize(e.raw, [0.5] * 3, [-0.25] * 3), ValueError,
        "has a value <= 0"),
    Api("normalize: mean/std on the 0-255 scale", lambda e: normalize(e.raw, [125.3, 123.0, 113.9],
                                                                      [63.0, 62.1, 66.7]),
        ValueError, "look like statistics of 0-255 pixels"),
    Api("normalize: already normalised images", lambda e: normalize(e.x, [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images"),
    Api("normalize: 2 mean values for 3 channels", lambda e: normalize(e.raw, [0.5] * 2, [0.25] * 2),
        ValueError, "2 mean/std values for images with 3 channels"),
    # ---- issue 25: the API refuses meaningless input where data enters --------------------
    Api("normalize: float images already divided by 255", lambda e: normalize(
        e.raw.astype(np.float32) / 255, [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images, uint8 pixels 0..255, got float32: already normalised or "
        "divided by 255?"),
    Api("normalize: float pixels on the 0..255 scale", lambda e: normalize(
        e.raw.astype(np.float64), [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images, uint8 pixels 0..255, got float64"),
    Api("normalize: complex images", lambda e: normalize(e.raw.astype(complex), [0.5] * 3, [0.25] * 3),
        ValueError, "normalize takes raw images, uint8 pixels 0..255, got complex128"),
    Api("normalize: a flat vector", lambda e: normalize(e.raw.reshape(4, -1), [0.5] * 3, [0.25] * 3),
        ValueError, "normalize takes raw images (N, C, H, W), got shape (4, 192)"),
]


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    check_api_case(c, env, files)
