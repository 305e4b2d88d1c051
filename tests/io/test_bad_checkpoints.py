"""Bad checkpoints (icsnn_np.io.checkpoint; issue 14 and 25): missing, corrupt, of another
format, with a broken header or tensors, not fitting the data; through the commands (one line,
exit 2) and the API (one clear error). The shared cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import pytest

from bad_input import Cli, check_cli_case, Api, check_api_case

from icsnn_np.io.checkpoint import (CheckpointError, check_fits_data, read_checkpoint,
                                    resolve_checkpoint)


CLI = [
    # demo: checkpoints
    Cli("demo missing checkpoint", "demo", ["--checkpoint", "{missing}"], 2, "missing.npz does not exist"),
    Cli("demo checkpoint is a folder", "demo", ["--checkpoint", "{folder}"], 2, "is a folder, not a file"),
    Cli("demo random-bytes checkpoint", "demo", ["--checkpoint", "{random}"], 2,
        "is not an .npz (zip) archive"),
    Cli("demo truncated checkpoint", "demo", ["--checkpoint", "{truncated}"], 2, "truncated or corrupt"),
    Cli("demo empty checkpoint", "demo", ["--checkpoint", "{empty}"], 2, "the file is empty"),
    Cli("demo .npy as checkpoint", "demo", ["--checkpoint", "{npy}"], 2, "single array (.npy)"),
    Cli("demo PyTorch state_dict as checkpoint", "demo", ["--checkpoint", "{statedict}"], 2,
        "see docs/import.md"),
    Cli("demo checkpoint mean/std on the 0-255 scale", "demo", ["--checkpoint", "{ck255}"], 2,
        "look like statistics of 0-255 pixels"),
    Cli("demo checkpoint std = 0", "demo", ["--checkpoint", "{std0}"], 2, "has a value <= 0"),
    Cli("demo checkpoint std NaN", "demo", ["--checkpoint", "{stdnan}"], 2, "contain NaN or inf"),
    Cli("demo checkpoint without mean/std", "demo", ["--checkpoint", "{nomean}"], 2,
        "has no mean or std in its header"),
    Cli("demo checkpoint mean/std for 2 channels", "demo", ["--checkpoint", "{mean2}"], 2,
        "mean holds 2 values, but the images have 3 channels"),
    Cli("demo checkpoint with NaN weights", "demo", ["--checkpoint", "{nanw}"], 2,
        "tensor features.0.weight contains NaN or inf"),
    Cli("demo 100-class model on CIFAR-10", "demo", ["--checkpoint", "{c100}"], 2,
        "100-class model, but cifar10-slice has 10 classes"),
    Cli("demo checkpoint stores p = 2", "demo", ["--checkpoint", "{p2}"], 2,
        "the checkpoint stores p = 2.0: the threshold quantile p must lie in (0, 1]", alone=False),
    # reproduce
    Cli("reproduce missing checkpoint", "reproduce", ["--checkpoint", "{missing}"], 2, "does not exist"),
    Cli("reproduce corrupt checkpoint", "reproduce", ["--checkpoint", "{random}"], 2, "not an .npz"),
    Cli("reproduce checkpoint mean/std on the 0-255 scale", "reproduce", ["--checkpoint", "{ck255}"], 2,
        "0-255"),
    Cli("reproduce 100-class model on CIFAR-10", "reproduce", ["--checkpoint", "{c100}"], 2, "100-class model"),
    # 4. every file checked before the work starts
    Cli("demo int8 checkpoint tensor", "demo", ["--checkpoint", "{int8}"], 2,
        "tensor features.0.weight is int8, not floating point"),
    Cli("demo bool checkpoint tensor", "demo", ["--checkpoint", "{bool}"], 2,
        "tensor features.0.bias is bool, not floating point"),
    Cli("demo header is a JSON list", "demo", ["--checkpoint", "{hlist}"], 2,
        "the header is a JSON list, not an object"),
    Cli("demo header: unknown arch", "demo", ["--checkpoint", "{archfoo}"], 2,
        "header field arch is 'foo': expected one of resnet20"),
    Cli("demo header: num_classes a string", "demo", ["--checkpoint", "{ncstr}"], 2,
        "header field num_classes is '10': expected a positive integer"),
    Cli("demo header: num_classes 0", "demo", ["--checkpoint", "{nc0}"], 2,
        "header field num_classes is 0: expected a positive integer"),
    Cli("demo header: mean a string", "demo", ["--checkpoint", "{meanstr}"], 2,
        "header field mean is 'abc': expected 1 or 3 numbers"),
    Cli("demo header: 4 mean values", "demo", ["--checkpoint", "{mean4}"], 2,
        "header: mean holds 4 values, but the images have 3 channels"),
    Cli("demo header: p a string", "demo", ["--checkpoint", "{pstr}"], 2,
        "the checkpoint stores p = 'x': the threshold quantile p must lie in (0, 1]"),
    Cli("demo header: unknown activation", "demo", ["--checkpoint", "{actfoo}"], 2,
        "header field activation is 'foo': expected relu or qcfs"),
    Cli("demo header: QCFS without levels", "demo", ["--checkpoint", "{qcfsnolevels}"], 2,
        "header field levels is None: a QCFS checkpoint needs its quantisation levels L"),
    Cli("demo header: version a string", "demo", ["--checkpoint", "{versionstr}"], 2,
        "header field version is 'x': expected a format version number"),
    Cli("demo /dev/zero as checkpoint", "demo", ["--checkpoint", "/dev/zero"], 2,
        "checkpoint /dev/zero is not a regular file (a device, pipe or socket)"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


def test_random_bytes_do_not_suggest_allow_pickle(files):
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(files["random"])
    assert "pickle" not in str(info.value)


API = [
    # checkpoints against the data
    Api("header without mean/std", lambda e: check_fits_data({"num_classes": 10}, 10), CheckpointError,
        "has no mean or std in its header"),
    Api("header without std", lambda e: check_fits_data({"num_classes": 10, "mean": [0.5] * 3}, 10),
        CheckpointError, "has no std in its header"),
    Api("header with std = 0", lambda e: check_fits_data({"num_classes": 10, "mean": [0.5] * 3,
                                                          "std": [0.0] * 3}, 10), CheckpointError, "<= 0"),
    Api("100-class model on CIFAR-10", lambda e: check_fits_data(
        {"num_classes": 100, "mean": [0.5] * 3, "std": [0.25] * 3}, 10, "cifar10"), CheckpointError,
        "100-class model, but cifar10 has 10 classes"),
    Api("checkpoint of random bytes", lambda e: read_checkpoint(e.files["random"]), CheckpointError,
        "is not an .npz (zip) archive"),
    Api("checkpoint is a folder", lambda e: read_checkpoint(e.files["folder"]), CheckpointError, "is a folder"),
    Api("checkpoint name is a folder", lambda e: resolve_checkpoint(e.files["folder"]), CheckpointError,
        "is a folder"),
    Api("header mean not numbers (check_fits_data)", lambda e: check_fits_data(
        {"num_classes": 10, "mean": "abc", "std": [0.2] * 3}, 10), CheckpointError,
        "header: mean 'abc' and std [0.2, 0.2, 0.2] must be numbers"),
    Api("header num_classes 'ten' (check_fits_data)", lambda e: check_fits_data(
        {"num_classes": "ten", "mean": [0.5] * 3, "std": [0.2] * 3}, 10), CheckpointError,
        "header field num_classes is 'ten': expected a positive integer"),
    Api("int8 tensor (read_checkpoint)", lambda e: read_checkpoint(e.files["int8"]), CheckpointError,
        "tensor features.0.weight is int8, not floating point"),
]


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    check_api_case(c, env, files)
