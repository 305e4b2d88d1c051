"""Faults say what happened and what was kept (io/files.py): a failed write names its file
(and, inside ``failed_write_note``, what a resumable run kept); a lock held by another
program's pid, or made on another host, names the pid and host and says when it is safe to
delete."""
from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys

import numpy as np
import pytest

import icsnn_np.io.files as files
from icsnn_np.cli.train import main as train_main
from icsnn_np.io.data import SLICE_PATH
from icsnn_np.io.files import atomic_write, atomic_write_all, exclusive, failed_write_note, lock_path
from icsnn_np.runs.partial import Partial


def _too_large(f):
    raise OSError(errno.EFBIG, "File too large")


# --------------------------------------------------------------------------- failed writes
def test_a_failed_write_names_the_file(tmp_path):
    path = tmp_path / "res.json"
    with pytest.raises(OSError, match="File too large") as info:
        atomic_write(path, _too_large)
    assert str(path) in str(info.value) and info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        atomic_write_all({tmp_path / "a.md": b"x", tmp_path / "b.json": _too_large})
    assert str(tmp_path / "b.json") in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_failed_write_says_what_the_run_kept(tmp_path):
    with failed_write_note(lambda: "the 3 measurements made so far are in x.partial.json: rerun "
                                   "with --resume"), pytest.raises(OSError) as info:
        atomic_write(tmp_path / "res.json", _too_large)
    assert "cannot write" in str(info.value) and "rerun with --resume" in str(info.value)
    with pytest.raises(OSError) as info:                  # outside the block: no note
        atomic_write(tmp_path / "res.json", _too_large)
    assert "--resume" not in str(info.value)


def test_a_partial_file_that_cannot_be_written_says_what_it_holds(tmp_path, monkeypatch):
    memo = Partial(tmp_path / "r.partial.json", {"command": "x"}, resume=False)
    memo.put("|SNN|8", {"acc": 1.0})
    real = files._write_temp                              # from now on every write fails
    monkeypatch.setattr(files, "_write_temp", lambda path, fn, suffix: real(path, _too_large, suffix))
    with pytest.raises(OSError) as info:
        memo.put("|SNN|16", {"acc": 2.0})
    text = str(info.value)
    assert str(tmp_path / "r.partial.json") in text
    assert "the 1 measurements made before are kept in it: rerun with --resume" in text


@pytest.mark.skipif(not SLICE_PATH.is_file(), reason="the bundled slice is not built")
def test_train_with_a_full_disk_names_the_file_and_the_checkpoint_kept(tmp_path, monkeypatch, capsys):
    calls = []
    real = np.savez_compressed

    def savez(f, **arrays):               # epoch 1's two checkpoints go through, then the disk is full
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.EFBIG, "File too large")
        return real(f, **arrays)
    monkeypatch.setattr(np, "savez_compressed", savez)
    rc = train_main(["--dataset", "cifar10-slice", "--epochs", "2", "--train-limit", "32",
                     "--batch-size", "32", "--no-augment", "--out", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith(f"error: cannot write {tmp_path}")
    assert "File too large" in err and "epoch 1 of 2" in err and "continue with --resume" in err


# --------------------------------------------------------------------------- locks
def _lock_of(stem, **info):
    lock_path(stem).write_text(json.dumps({"started": "2026-01-01 00:00:00", **info}))


def test_a_lock_made_on_another_host_names_it_and_when_to_delete(tmp_path):
    stem = tmp_path / "res"
    _lock_of(stem, pid=4242, host="elsewhere.example")
    with pytest.raises(ValueError) as info, exclusive(stem):
        pass
    text = str(info.value)
    assert "pid 4242 on host elsewhere.example" in text
    assert f"it is safe to delete {lock_path(stem)}" in text and "\n" not in text


def test_a_lock_naming_another_programs_live_pid_says_it_is_stale(tmp_path):
    stem = tmp_path / "res"
    other = subprocess.Popen(["sleep", "60"])
    try:
        _lock_of(stem, pid=other.pid, host=socket.gethostname(), command="python -m icsnn_np.reproduce")
        with pytest.raises(ValueError) as info, exclusive(stem):
            pass
    finally:
        other.kill()
        other.wait()
    text = str(info.value)
    assert f"names pid {other.pid}" in text and "another program ('sleep 60')" in text
    assert f"safe to delete {lock_path(stem)}" in text


def test_a_lock_records_its_command_and_a_live_run_says_when_it_is_safe_to_delete(tmp_path):
    with exclusive(tmp_path / "mine") as lock:
        held = json.loads(lock.read_text())
    assert held["command"] and "pytest" in held["command"]          # this process's command line
    stem = tmp_path / "res"
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_of(stem, pid=run.pid, host=socket.gethostname())
        with pytest.raises(ValueError) as info, exclusive(stem):
            pass
    finally:
        run.kill()
        run.wait()
    text = str(info.value)
    assert f"is in use by another run (pid {run.pid} on this machine" in text
    assert "safe once it has ended" in text
