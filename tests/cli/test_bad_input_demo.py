"""Bad input to the demo command (issue 14; the table's checks: tests/bad_input.py): one
line and exit code 2 (130 after Ctrl-C), never a traceback; the judged commands as processes;
demo and reproduce draw the same images for the same flags.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bad_input import ctrl_c, little_memory, no_bundled_model, raises, Cli, fill, check_cli_case

from icsnn_np.cli import demo, reproduce
from icsnn_np.runs import demo as demo_run
from icsnn_np.io.checkpoint import load_checkpoint
from icsnn_np.io.data import load_dataset
from icsnn_np.io.preprocess import normalize
from icsnn_np.runs import protocol
from icsnn_np.runs.protocol import calibration_split


CLI = [
    # demo: numbers, names, counts
    Cli("demo T = 0", "demo", ["--T", "0"], 2, "T must be a positive integer"),
    Cli("demo T < 0", "demo", ["--T", "-3"], 2, "T must be a positive integer"),
    Cli("demo T not a number", "demo", ["--T", "x"], 2, "expected an integer number of time steps"),
    Cli("demo T = 100,000,000 (above 2**24)", "demo", ["--T", "100000000"], 2, "more than 16,777,216"),
    Cli("demo p = 2", "demo", ["--p", "2"], 2, "p must be a number in (0, 1]"),
    Cli("demo p = 0", "demo", ["--p", "0"], 2, "p must be a number in (0, 1]"),
    Cli("demo p = nan", "demo", ["--p", "nan"], 2, "p must be a number in (0, 1]"),
    Cli("demo unknown variant", "demo", ["--variants", "foo"], 2, "unknown variant 'foo'"),
    Cli("demo unknown stats variant (before the evaluation)", "demo",
        ["--stats", "--stats-variant", "foo"], 2, "unknown variant 'foo'",
        patch=lambda mp: mp.setattr(demo_run, "evaluate_conversion", raises(AssertionError("ran")))),
    Cli("demo unknown model", "demo", ["--model", "foo"], 2, "unknown model 'foo'"),
    Cli("demo unknown dataset", "demo", ["--dataset", "foo"], 2, "unknown dataset 'foo'"),
    Cli("demo unknown coding", "demo", ["--coding", "foo"], 2, "invalid choice: 'foo'"),
    Cli("demo unknown flag", "demo", ["--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
    Cli("demo n-test = 0", "demo", ["--n-test", "0"], 2, "--n-test must be an integer >= 1, got 0"),
    Cli("demo n-test < 0", "demo", ["--n-test", "-5"], 2, "--n-test must be an integer >= 1, got -5"),
    Cli("demo n-calib = 0", "demo", ["--n-calib", "0"], 2, "--n-calib must be an integer >= 1"),
    Cli("demo batch size = 0", "demo", ["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    Cli("demo chunk = 0", "demo", ["--chunk", "0"], 2, "--chunk must be an integer >= 1"),
    Cli("demo n-stats = 0", "demo", ["--n-stats", "0"], 2, "--n-stats must be an integer >= 1"),
    Cli("demo n-test above the test set", "demo", ["--n-test", "5000"], 2, "the test set has only 1000",
        alone=False),
    Cli("demo n-calib above the training set", "demo", ["--n-calib", "5000"], 2,
        "the training set has only 1000", alone=False),
    # demo: resources, Ctrl-C
    Cli("demo T = chunk = 100,000 (would allocate TiBs)", "demo", ["--T", "100000", "--chunk", "100000"],
        2, "use a smaller chunk (--chunk", alone=False),
    Cli("demo batch too large for memory (reference engine)", "demo",
        ["--engine", "reference", "--n-test", "250", "--batch-size", "250"], 2,
        "use a smaller batch (--batch-size", patch=little_memory, alone=False),
    Cli("demo Ctrl-C", "demo", [], 130, "interrupted (Ctrl-C); nothing was written",
        patch=ctrl_c(demo_run, "evaluate_conversion"), alone=False),
    # ---- issue 25 ----------------------------------------------------------------------
    # 1. threshold balancing: a p whose quantile is 0 stops the run (a sweep: before any work)
    Cli("demo p = 1e-9 (zero quantile)", "demo", ["--p", "1e-9"], 2,
        "the p-quantile is 0 at p = 1e-09 in features.1: ", alone=False),
    Cli("demo --model beside the model that runs (it would be ignored)", "demo", ["--model", "resnet20"], 2,
        "--model resnet20 is what the demo trains when no model is bundled; to run a model, name it: "
        "--checkpoint resnet20"),
    Cli("demo --workdir unwritable (names --workdir, not --out)", "demo",
        ["--n-test", "5", "--workdir", "/proc/icsnn_nope"], 2,
        "--workdir: the on-the-spot model /proc/icsnn_nope/demo_vgg_cpu_cifar10-slice.npz: cannot "
        "write in /proc", patch=no_bundled_model, base=False),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv, msg", [
    (["-m", "icsnn_np.demo", "--checkpoint", "{ck255}", "--n-test", "5"], "0-255"),
    (["-m", "icsnn_np.reproduce", "--checkpoint", "missing.npz"], "missing.npz does not exist"),
    (["-m", "icsnn_np.train", "--train-limit", "0"], "--train-limit must be an integer >= 1"),
], ids=["demo 0-255 checkpoint", "reproduce missing checkpoint", "train train-limit 0"])
def test_the_judged_commands_as_processes(argv, msg, files, tmp_path):
    """The issue's own commands, as a user runs them: exit 2, one line, no traceback."""
    r = subprocess.run([sys.executable, *fill(argv, files, tmp_path)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error:")
    assert msg in r.stderr and "Traceback" not in r.stderr


class _Seen(Exception):
    pass


@pytest.mark.parametrize("subset", ["first", "random"])
def test_demo_and_reproduce_use_the_same_images_for_the_same_flags(files, tmp_path, monkeypatch, subset):
    """Calibration: one seeded sample of the training set; test: the first n or a seeded
    random sample, in both CLIs (protocol.py), so the same flags print the same numbers."""
    seen = {}

    def capture(name):
        def f(model, x_calib, x_test, y_test, *a, **k):
            seen[name] = (np.asarray(x_calib), np.asarray(x_test), np.asarray(y_test))
            raise _Seen
        return f

    flags = ["--checkpoint", str(files["ckpt"]), "--dataset", "cifar10-slice", "--n-test", "7",
             "--n-calib", "9", "--seed", "3", "--test-subset", subset, "--T", "2"]
    monkeypatch.setattr(demo_run, "evaluate_conversion", capture("demo"))
    monkeypatch.setattr(reproduce, "sweep", capture("reproduce"))
    with pytest.raises(_Seen):
        demo.main(flags)
    with pytest.raises(_Seen):
        reproduce.main(flags + ["--out", str(tmp_path / "r")])
    for a, b in zip(seen["demo"], seen["reproduce"]):
        np.testing.assert_array_equal(a, b)
    ds = load_dataset("cifar10-slice")
    cal, _ = calibration_split(len(ds.x_train), 9, 3)
    idx = protocol.test_indices(len(ds.x_test), 7, subset, 3)
    h = load_checkpoint(files["ckpt"])[1]
    np.testing.assert_array_equal(seen["demo"][0], normalize(ds.x_train[cal], h["mean"], h["std"]))
    np.testing.assert_array_equal(seen["demo"][2], ds.y_test[idx])
    assert (list(idx) == list(range(7))) == (subset == "first")
    assert len(set(cal)) == 9 and list(cal) != list(range(9))   # seeded sample, not the first 9
