"""One vocabulary for every command (issue 32): the same flag takes the same values with the
same meaning in demo, train, reproduce, compare and bench; every option shows its default
(or says what an unset one means); every --help ends with examples and the environment; and
--version answers everywhere, python -m icsnn_np too."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from icsnn_np.bench import __main__ as bench
from icsnn_np.cli import compare, demo, reproduce, train

ROOT = Path(__file__).resolve().parents[2]
PARSERS = {"demo": demo.parser, "train": train.parser, "reproduce": reproduce.parser,
           "compare": compare.parser, "bench": bench.parser}


def flags(parser) -> dict:
    """{--flag: what decides its values (choices, the type's name, nargs, a store_true)}."""
    out = {}
    for a in parser._actions:
        for s in a.option_strings:
            if s.startswith("--") and s not in ("--help", "--version"):
                kind = type(a).__name__
                typ = getattr(a.type, "__qualname__", None) if a.type else None
                out[s] = (kind, tuple(a.choices) if a.choices else None, typ, a.nargs)
    return out


def test_a_flag_means_the_same_in_every_command():
    seen = {}
    for name, make in PARSERS.items():
        for flag, spec in flags(make()).items():
            seen.setdefault(flag, {})[name] = spec
    shared = {f: by for f, by in seen.items() if len(by) > 1}
    assert {"--T", "--p", "--thresholds", "--variants", "--checkpoint", "--dataset", "--data-dir",
            "--n-test", "--n-calib", "--backend", "--engine", "--seed", "--out", "--force",
            "--log", "--json", "--resume"} <= set(shared)
    for flag, by in shared.items():
        assert len(set(by.values())) == 1, f"{flag} differs: {by}"


@pytest.mark.parametrize("name", PARSERS)
def test_help_shows_defaults_examples_and_the_environment(name):
    p = PARSERS[name]()
    text = p.format_help()
    assert "examples (times on 2 CPU cores):" in text and "ICSNN_DATA" in text
    for a in p._actions:
        if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and a.help:
            assert "default" in p._get_formatter()._get_help_string(a) % {"default": a.default} \
                or "default" in a.help, f"{name} {a.option_strings}: no default shown"


@pytest.mark.parametrize("cmd", [["icsnn_np"], ["icsnn_np", "--version"], ["icsnn_np.demo", "--version"],
                                 ["icsnn_np.train", "--version"], ["icsnn_np.bench", "--version"]])
def test_the_package_and_each_command_answer(cmd):
    out = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert ("demo" in out.stdout and "reproduce" in out.stdout) if cmd == ["icsnn_np"] else \
        out.stdout.startswith("icsnn-np ")


def test_old_spellings_work_with_a_note(capsys):
    a = demo.parse_args(["--thresholds", "quantile"])
    assert a.thresholds == "layer" and "0.1 spelling" in capsys.readouterr().err
    with pytest.raises(ValueError, match="one --p, --thresholds and --block"):
        demo.parse_args(["--p", "0.9", "0.99"])
