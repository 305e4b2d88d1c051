"""Damaged resume and partial files (icsnn_np.runs.resume, runs.partial; issue 25): train
--resume and reproduce --resume refuse them with one line, exit 2, before any work. The shared
cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from bad_input import (resume_state, resume_files, truncated_resume, partial_file, GOOD_ENTRY, Cli,
                       check_cli_case, Api, check_api_case)

from icsnn_np.runs.partial import Partial


CLI = [
    Cli("train resume state truncated", "train", ["--resume"], 2,
        "t_resume.npz is corrupt (BadZipFile", setup=resume_files(raw=truncated_resume)),
    Cli("train resume state without rng", "train", ["--resume"], 2, "its state lacks 'rng'",
        setup=resume_files(resume_state(rng=None))),
    Cli("train resume state with a wrong momentum shape", "train", ["--resume"], 2,
        "momentum of 'features.0.weight' has shape (3, 3), the parameter (32, 3, 3, 3)",
        setup=resume_files(resume_state(), {"features.0.weight": np.zeros((3, 3), np.float32)})),
    Cli("train resume state of an epoch beyond the run", "train", ["--resume"], 2,
        "epoch 5 is not an epoch count in 1..1", setup=resume_files(resume_state(epoch=5))),
    Cli("train resume state with a short history", "train", ["--resume"], 2,
        "its history is not one record", setup=resume_files(resume_state(history=[]))),
    Cli("train resume state with a foreign RNG", "train", ["--resume"], 2,
        "its RNG state is not a PCG64 state", setup=resume_files(resume_state(rng={"x": 1}))),
    Cli("reproduce partial entry without its record", "reproduce", ["--resume"], 2,
        "measurement '|SNN|2' lacks correct", setup=partial_file(
            {"|SNN|2": {k: v for k, v in GOOD_ENTRY.items() if k != "correct"}})),
    Cli("reproduce partial entry whose record disagrees", "reproduce", ["--resume"], 2,
        "has acc 90.0 but its record counts 2 of 5 right",
        setup=partial_file({"|SNN|2": dict(GOOD_ENTRY, acc=90.0)})),
    Cli("reproduce partial entry of an unknown row", "reproduce", ["--resume"], 2,
        "names an unknown row 'NOPE'", setup=partial_file({"|NOPE|2": GOOD_ENTRY})),
    Cli("reproduce partial entry that is a list", "reproduce", ["--resume"], 2,
        "measurement '|SNN|2' is a list, not an object", setup=partial_file({"|SNN|2": [1]})),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


def _partial_api(d):
    path = d / "api.partial.json"
    path.write_text(json.dumps({"fingerprint": {"a": 1}, "done": {"p|SNN|4": dict(GOOD_ENTRY, steps=9)}}))
    try:
        Partial(path, {"a": 1}, resume=True, n_images=5)
    finally:
        path.unlink()


API = [
    Api("partial file with a malformed entry (Partial)", lambda e: _partial_api(e.files["dir"]),
        ValueError, "measurement 'p|SNN|4' has steps = 9, not prerun + T = 4"),
]


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    check_api_case(c, env, files)
