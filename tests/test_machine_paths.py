"""No committed file names a folder of the machine it was made on.

A reader cannot use ``/home/me/runs/x.npz`` or ``C:\\Users\\me``: committed notebooks,
results, READMEs and code record paths relative to the repository (or a bundled model's
name). This test scans every tracked text file (``git ls-files``), notebooks and JSON by
their decoded strings, for absolute paths under home, temporary and work folders and for
drive letters. It does not scan itself: its patterns would match.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from icsnn_np.cli.common import recorded_command

ROOT = Path(__file__).resolve().parents[1]
# a folder name after a character that cannot end a relative path or a URL's host
UNIX = re.compile(r"(?<![\w./:~-])/(?:home|Users|root|tmp|var/folders|var/tmp|private/var|work|mnt|"
                  r"scratch|media)/[\w.~-]")
DRIVE = re.compile(r"(?<![\w^])[A-Za-z]:[\\/]+(?=[\w.~$-])")
ECHOED = re.compile(r"(?:Posix|Windows)Path\(['\"](?:/|[A-Za-z]:)")   # a cell echoing an absolute Path
PATTERNS = (UNIX, DRIVE, ECHOED)
BINARY = (".npz", ".npy", ".png", ".gif", ".jpg", ".pdf", ".gz", ".bin")


def tracked_text_files():
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: git ls-files lists nothing to scan")
    me = Path(__file__).resolve().relative_to(ROOT).as_posix()
    return [n for n in names if n != me and not n.endswith(BINARY) and (ROOT / n).is_file()]


def strings(value):
    """Every string in a decoded JSON document (a notebook's sources and outputs)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def machine_paths(name: str, text: str) -> list[str]:
    """The absolute machine paths in one file's text, as ``file: match``."""
    if name.endswith((".ipynb", ".json")):
        text = "\n".join(strings(json.loads(text)))      # "\\n" in the file is a newline here
    return [f"{name}: {m.group(0)!r} in {text[max(0, m.start() - 40):m.end() + 40]!r}"
            for pattern in PATTERNS for m in pattern.finditer(text)]


def test_no_tracked_file_names_a_machine_folder():
    found = []
    for name in tracked_text_files():
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue                                     # a binary file without a known suffix
        found += machine_paths(name, text)
    assert not found, "absolute machine paths (record relative ones):\n" + "\n".join(found[:20])


@pytest.mark.parametrize("text", [
    "python -m x --checkpoint /root/runs/m.npz", "figures -> /work/main/tutorials/figures",
    "saved to /tmp/icsnn_tutorial_abc/f.png", "/home/me/data", "C:\\Users\\me\\x.npz",
    "D:/data/cifar", "PosixPath('/opt/figures/a.png')", "/Users/me/icsnn"])
def test_the_scan_finds_machine_paths(text):
    assert machine_paths("x.md", text)


@pytest.mark.parametrize("text", [
    "results/vgg_cpu_cifar10.md", "--data-dir ../shared/data", "open('/proc/stat')",
    "https://doi.org/10.3390/math11010058", "#!/usr/bin/env bash", "I(t) = W^l x^l(t) + b^l:",
    "ratio 2:1", "a/tmp/b", "~/work/x", "PosixPath('tutorials/figures/a.png')"])
def test_the_scan_leaves_relative_paths_alone(text):
    assert not machine_paths("x.md", text)


def test_a_notebook_is_scanned_by_its_decoded_strings():
    nb = json.dumps({"cells": [{"source": ["b^l:\n", "x"], "outputs": [{"text": "/tmp/a/b.png"}]}]})
    found = machine_paths("a.ipynb", nb)
    assert len(found) == 1 and "/tmp/a/" in found[0]


def test_recorded_commands_drop_the_log_and_machine_folders(tmp_path):
    argv = ["--checkpoint", str(tmp_path / "runs" / "m.npz"), "--out", "results/x",
            "--log", "/root/runs/x.log", "--T", "8", "--log=y.log", "--data-dir", "/data/cifar"]
    assert recorded_command("python -m icsnn_np.reproduce", argv, cwd=tmp_path) == (
        "python -m icsnn_np.reproduce --checkpoint runs/m.npz --out results/x --T 8 "
        "--data-dir cifar")
