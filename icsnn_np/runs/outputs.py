"""Result files: where a command's outputs go, who holds them, how the command is recorded.

    check_outputs(stem, log, force=False)     # before any work: writable, nothing replaced
    with claim(stem): ...                     # <stem>.lock: one run per output
    write_outputs(stem, {".json": b, ".md": b})   # all or none, through temporary names
"""
from __future__ import annotations

import os
from pathlib import Path

from ..io.files import atomic_write_all, check_new_output, check_not_in_use, check_output_file, exclusive


def recorded_command(prog: str, argv, cwd=None) -> str:
    """The command line as a results file records it: ``prog`` and ``argv`` without ``--log``
    (where a run logged is no part of its result) and without machine folders: an absolute
    path inside ``cwd`` (default: the working folder) becomes relative to it, one outside
    it becomes its file name (a reader has neither folder)."""
    cwd = Path(cwd or os.getcwd()).resolve()
    words, skip = [], False
    for word in argv:
        if skip or word.startswith("--log="):
            skip = False
            continue
        if word == "--log":
            skip = True
            continue
        if os.path.isabs(word):
            path = Path(word).resolve()
            word = str(path.relative_to(cwd)) if path.is_relative_to(cwd) else path.name
        words.append(word)
    return " ".join([prog] + words)


def with_ext(stem, ext: str) -> Path:
    """``stem`` + ``ext``: a stem may contain dots (``..._p0.999``), so no with_suffix."""
    stem = Path(stem)
    return stem.with_name(stem.name + ext)


def check_outputs(stem, log=None, exts=(".json", ".md", ".png"), force=False, hint=""):
    """Before any work: every ``stem`` + ext (``--out``) and the ``--log`` file can be
    written, and no ``stem`` + ext exists unless ``force`` (a result is never replaced
    without being told); a live run on ``stem`` is named first."""
    check_not_in_use(stem)
    for ext in exts:
        check_new_output(with_ext(stem, ext), "--out", force, hint)
    if log:
        check_output_file(log, "--log")


def write_outputs(stem, data: dict):
    """``{ext: bytes}`` as ``stem`` + ext, all or none (io.files.atomic_write_all)."""
    atomic_write_all({with_ext(stem, ext): b for ext, b in data.items()})


def claim(stem, log=None, what="--out", lock=None):
    """Hold ``stem`` for this run (``<stem>.lock``, or ``lock``; io.files.exclusive): a second
    run on the same output stops with one line naming the process that holds it."""
    return exclusive(stem, log, what, lock)
