"""Bad input to the train command (issue 14; the table's checks: tests/bad_input.py): one
line and exit code 2 (130 after Ctrl-C, naming the checkpoint kept); progress on stderr.
"""
from __future__ import annotations

import pytest

from bad_input import ctrl_c, ctrl_c_after_epoch_1, Cli, BASE, fill, check_cli_case

from icsnn_np.cli import train as train_cli
from icsnn_np.io.checkpoint import load_checkpoint
from icsnn_np.runs import training as train_mod


CLI = [
    # train
    Cli("train train-limit = 0", "train", ["--train-limit", "0"], 2,
        "--train-limit must be an integer >= 1, got 0"),
    Cli("train train-limit < 0", "train", ["--train-limit", "-5"], 2,
        "--train-limit must be an integer >= 1, got -5"),
    Cli("train epochs = 0", "train", ["--epochs", "0"], 2, "--epochs must be an integer >= 1"),
    Cli("train batch size = 0", "train", ["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    Cli("train lr = 0", "train", ["--lr", "0"], 2, "lr must be a finite number > 0"),
    Cli("train lr = nan", "train", ["--lr", "nan"], 2, "lr must be a finite number > 0"),
    Cli("train momentum = 1.5", "train", ["--momentum", "1.5"], 2,
        "momentum must be a finite number in [0, 1)"),
    Cli("train weight decay < 0", "train", ["--weight-decay", "-1"], 2,
        "weight_decay must be a finite number >= 0"),
    Cli("train warm-up < 0", "train", ["--warmup", "-1"], 2, "--warmup must be an integer >= 0"),
    Cli("train milestone = 0", "train", ["--milestones", "0"], 2, "a milestone epoch must be an integer >= 1"),
    Cli("train unknown model", "train", ["--model", "foo"], 2, "unknown model 'foo'"),
    Cli("train unknown dataset", "train", ["--dataset", "foo"], 2, "unknown dataset 'foo'"),
    Cli("train out is an existing folder", "train", ["--out", "{folder}"], 2, "is an existing folder"),
    Cli("train out under a file", "train", ["--out", "{afile}/m.npz"], 2, "is a file, not a folder"),
    Cli("train out in an unwritable folder", "train", ["--out", "/proc/icsnn/m.npz"], 2,
        "cannot write in /proc"),
    Cli("train resume without a run", "train", ["--resume"], 2, "cannot resume"),
    Cli("train diverges", "train", ["--lr", "1e6", "--batch-size", "8"], 2,
        "training diverged at batch", alone=False),
    Cli("train Ctrl-C in epoch 1", "train", ["--epochs", "2"], 130,
        "no epoch was complete: nothing was written", patch=ctrl_c(train_mod, "train_epoch"), alone=False),
    Cli("train Ctrl-C in epoch 2", "train", ["--epochs", "2"], 130,
        "kept the last complete checkpoint", patch=ctrl_c_after_epoch_1, alone=False),
    Cli("train --milestones without a value", "train", ["--milestones"], 2,
        "argument --milestones: expected at least one argument"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


def test_ctrl_c_in_train_names_the_checkpoint_it_kept(files, tmp_path, capsys, monkeypatch):
    ctrl_c_after_epoch_1(monkeypatch)
    out = tmp_path / "t.npz"
    rc = train_cli.main(fill(BASE["train"] + ["--epochs", "2"], files, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()[-1]    # after the progress lines (stderr)
    assert rc == 130
    assert err == (f"error: interrupted (Ctrl-C); kept the last complete checkpoint {out} (epoch 1 "
                   f"of 2; the best so far is {tmp_path / 't_best.npz'}); continue with --resume")
    assert load_checkpoint(out)[1]["epoch"] == 1


def test_training_progress_goes_to_stderr_when_it_is_not_a_terminal(files, tmp_path, capsys, monkeypatch):
    """Piped or logged, a run shows batch progress within the epoch and a line per epoch,
    all on stderr (here after 0 s instead of FIRST_REPORT_S); stdout holds the result alone."""
    monkeypatch.setattr(train_mod, "FIRST_REPORT_S", 0.0)
    monkeypatch.setattr(train_mod, "EVERY_S", 0.0)
    argv = fill(BASE["train"], files, tmp_path)
    argv[argv.index("--batch-size") + 1] = "8"
    assert train_cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("best: epoch 1") and len(out.splitlines()) == 1
    assert "epoch 1 batch 1/4 loss" in err and "epoch   1/1" in err
