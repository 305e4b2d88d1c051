"""Bad input to the benchmark command (icsnn_np.bench; issue 14 and 25): one line and exit
code 2 (130 after Ctrl-C), never a traceback. The shared cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import pytest

from bad_input import ctrl_c, no_torch, Cli, check_cli_case

from icsnn_np.bench import __main__ as bench_cli


CLI = [
    # bench
    Cli("bench repeats = 0", "bench", ["--repeats", "0"], 2, "--repeats must be an integer >= 1"),
    Cli("bench chunk = 0", "bench", ["--chunk", "0"], 2, "--chunk must be an integer >= 1"),
    Cli("bench agreement seeds = 0", "bench", ["--agreement-seeds", "0"], 2,
        "--agreement-seeds must be an integer >= 1"),
    Cli("bench unknown part", "bench", ["--only", "foo"], 2, "invalid choice: 'foo'"),
    Cli("bench out is a folder", "bench", ["--out", "{folder}"], 2, "is an existing folder"),
    Cli("bench Ctrl-C", "bench", [], 130, "nothing was written", patch=ctrl_c(bench_cli, "run"), alone=False),
    Cli("bench --only without a value", "bench", ["--only"], 2,
        "argument --only: expected at least one argument"),
    Cli("bench --agreement-seeds with --no-torch", "bench", ["--agreement-seeds", "1"], 2,
        "--agreement-seeds compares with PyTorch: not with --no-torch"),
    Cli("bench --agreement-seeds without PyTorch", "bench",
        ["--quick", "--agreement-seeds", "1", "--out", "{tmp}/a.json"], 2,
        "--agreement-seeds compares with PyTorch, which does not import here", patch=no_torch,
        base=False),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)
