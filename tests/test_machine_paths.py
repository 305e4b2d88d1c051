"""No committed file names a folder of the machine it was made on.

A reader cannot use ``/home/me/runs/x.npz`` or ``C:\\Users\\me``: committed notebooks,
results, READMEs and code record paths relative to the repository (or a bundled model's
name). This test scans every tracked text file (``git ls-files``), notebooks and JSON by
their decoded strings (metadata and keys included), and the text inside every tracked
``.npz`` (a checkpoint's JSON header, ``__meta__``, and any string array), for absolute
paths under home, temporary and work folders and for drive letters. It does not scan
itself: its patterns would match.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
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


def tracked_files():
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: git ls-files lists nothing to scan")
    return [n for n in names if (ROOT / n).is_file()]


def tracked_text_files():
    me = Path(__file__).resolve().relative_to(ROOT).as_posix()
    return [n for n in tracked_files() if n != me and not n.endswith(BINARY)]


def strings(value):
    """Every string in a decoded JSON document, keys included (a notebook's sources, outputs
    and metadata; a checkpoint's header)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
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


def npz_text(path) -> str:
    """The text inside one ``.npz``, one string a line: its JSON header's strings
    (``__meta__``, UTF-8 bytes stored as uint8) and every string array. numpy refuses object
    arrays here (allow_pickle=False): a tracked archive must not need pickle to be read."""
    out = []
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            a = z[key]
            if key == "__meta__":
                out += strings(json.loads(a.tobytes().decode("utf-8")))
            elif a.dtype.kind in "US":
                out += [str(x) for x in a.ravel()]
    return "\n".join(out)


def test_no_tracked_npz_header_names_a_machine_folder():
    names = [n for n in tracked_files() if n.endswith(".npz")]
    assert names, "no tracked .npz found: the scan would pass vacuously"
    found = [f for n in names for f in machine_paths(n, npz_text(ROOT / n))]
    assert not found, "absolute machine paths inside .npz files:\n" + "\n".join(found[:20])


def test_the_npz_scan_reads_headers_and_string_arrays(tmp_path):
    header = {"arch": "x", "train_config": {"out": "/root/runs/m.npz", "data_dir": None}}
    bad = tmp_path / "bad.npz"
    np.savez(bad, w=np.zeros(3, np.float16), note=np.array("made in /home/me/icsnn"),
             __meta__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    found = machine_paths("bad.npz", npz_text(bad))
    assert len(found) == 2 and any("/root/" in f for f in found) and any("/home/" in f for f in found)
    good = tmp_path / "good.npz"
    header["train_config"]["out"] = "runs/m.npz"
    np.savez(good, w=np.zeros(3), __meta__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    assert not machine_paths("good.npz", npz_text(good))


def test_a_notebook_is_scanned_by_its_metadata_and_keys_too():
    meta = {"jupytext": {"text_representation": {"path": "/tmp/x/a.py"}}, "kernelspec": {"name": "py"}}
    assert len(machine_paths("a.ipynb", json.dumps({"cells": [], "metadata": meta}))) == 1
    assert machine_paths("a.ipynb", json.dumps({"metadata": {"/home/me/runs": 1}}))


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
