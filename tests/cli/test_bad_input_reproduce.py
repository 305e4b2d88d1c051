"""Bad input to the reproduce and compare commands (issue 14; the table's checks:
tests/bad_input.py): one line and exit code 2 (130 after Ctrl-C); every table states its
threshold rule.
"""
from __future__ import annotations

import json

import pytest

from bad_input import ctrl_c, Cli, BASE, fill, check_cli_case

from icsnn_np.cli import compare, demo, reproduce


CLI = [
    Cli("reproduce with every default on the slice (vgg_cpu, 2,000 test images)", "reproduce",
        ["--dataset", "cifar10-slice"], 2, "2000 test images asked for: the test set has only 1000",
        base=False),
    Cli("reproduce p = 2", "reproduce", ["--p", "0.9", "2"], 2, "p must be a number in (0, 1]"),
    Cli("reproduce row 99", "reproduce", ["--rows", "99"], 2, "--rows takes numbers 0..19 (listed in --help)"),
    Cli("reproduce T = 0", "reproduce", ["--reading-T", "0"], 2, "T must be a positive integer"),
    Cli("reproduce validation = 0", "reproduce", ["--validation", "0"], 2,
        "--validation must be an integer >= 1"),
    Cli("reproduce validation above the training set", "reproduce", ["--validation", "2000"], 2,
        "the training set has only 1000"),
    Cli("reproduce unknown dataset", "reproduce", ["--dataset", "foo"], 2, "unknown dataset 'foo'"),
    Cli("reproduce out names a folder", "reproduce", ["--out", "{stem}"], 2, "res.json is an existing folder"),
    Cli("reproduce log is a folder", "reproduce", ["--log", "{folder}"], 2, "--log"),
    Cli("reproduce Ctrl-C", "reproduce", ["--log", "{tmp}/log.txt"], 130,
        "progress so far is in", patch=ctrl_c(reproduce, "sweep"), alone=False),
    Cli("reproduce sweep with a zero-quantile p (refused before work)", "reproduce",
        ["--p", "0.99", "1e-9"], 2, "--p 1e-09 (layer-wise thresholds): threshold balancing: the "
        "p-quantile is 0 at p = 1e-09 in features.1: "),
    Cli("reproduce sweep with two p of the same thresholds", "reproduce", ["--p", "1.0", "1.0"], 2,
        "--p 1.0 and --p 1.0 give the same layer-wise thresholds"),
    Cli("reproduce --rows without a value", "reproduce", ["--rows"], 2,
        "argument --rows: expected at least one argument"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


def test_every_table_states_its_threshold_rule(files, tmp_path, capsys):
    assert reproduce.main(fill(BASE["reproduce"], files, tmp_path)) == 0
    settings = json.loads((tmp_path / "res.json").read_text())["settings"]
    assert settings["threshold_rule"].startswith("layer: p-quantile of all the layer's ReLU outputs")
    assert "threshold_rule=layer: p-quantile" in (tmp_path / "res.md").read_text()
    assert compare.main(fill(BASE["compare"], files, tmp_path)) == 0
    assert json.loads((tmp_path / "cmp.json").read_text())["settings"]["threshold_rule"].startswith("layer:")
    capsys.readouterr()
    assert demo.main(fill(BASE["demo"] + ["--channelwise", "--json"], files, tmp_path)) == 0
    rule = json.loads(capsys.readouterr().out)["config"]["threshold_rule"]
    assert rule.startswith("channel: p-quantile of each channel's positive ReLU outputs")
