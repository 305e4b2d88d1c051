"""The train command (icsnn_np.cli.train): a tiny run returns 0, a diverging one 2 with the
reason, bad settings are refused, ``--resume`` continues an interrupted run. (The training
itself: tests/runs/test_training.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import interrupting_evaluate, needs_slice

from icsnn_np.cli.train import main
from icsnn_np.io.checkpoint import load_checkpoint
from icsnn_np.runs.training import resume_path


@needs_slice
def test_cli_tiny_run_returns_0(tmp_path, capsys):
    out = tmp_path / "cli.npz"
    rc = main(["--dataset", "cifar10-slice", "--model", "vgg_cpu", "--epochs", "1",
               "--train-limit", "64", "--batch-size", "32", "--no-augment", "--out", str(out)])
    assert rc == 0
    assert out.is_file() and (tmp_path / "cli_best.npz").is_file()
    assert "epoch   1/1" in capsys.readouterr().err           # progress: stderr
    assert load_checkpoint(out)[1]["train_config"]["augment"] is False


@needs_slice
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cli_diverging_run_returns_2_with_the_reason(tmp_path, capsys):
    rc = main(["--dataset", "cifar10-slice", "--epochs", "1", "--train-limit", "64",
               "--batch-size", "16", "--lr", "1e6", "--out", str(tmp_path / "d.npz")])
    assert rc == 2
    assert "error: epoch 1: training diverged" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "0"], ["--batch-size", "0"]])
def test_cli_rejects_bad_settings(tmp_path, args):
    assert main(["--dataset", "cifar10-slice", "--out", str(tmp_path / "x.npz"), *args]) == 2


@needs_slice
def test_cli_resume_flag(tmp_path, capsys, monkeypatch):
    out = tmp_path / "c.npz"
    args = ["--dataset", "cifar10-slice", "--epochs", "2", "--train-limit", "32", "--batch-size",
            "32", "--no-augment", "--out", str(out)]
    interrupting_evaluate(monkeypatch)
    assert main(args) == 130                     # Ctrl-C: one line, exit code 130
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0
    text = capsys.readouterr().err
    assert "resuming after epoch 1 of 2" in text and "epoch   2/2" in text and "epoch   1/2" in text
    with np.load(resume_path(out)) as z:
        state = json.loads(bytes(z["__state__"]).decode())
    assert state["epoch"] == 2 and state["train_config"]["engine"] == "fast"   # the CLI's default
