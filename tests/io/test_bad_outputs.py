"""Outputs and their locks (icsnn_np.io.files; issue 25): committed results are never a
default output nor replaced unless told (--force), one run per output (a live run's lock is
named with its pid, a stale one taken over), a table's files written all or none. The shared
cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bad_input import (ROOT, no_bundled_model, existing, live_lock, Cli, MAINS, BASE, fill,
                       check_cli_case, holding, Api, check_api_case)

from icsnn_np.cli import reproduce
from icsnn_np.io.files import atomic_write_all, exclusive


CLI = [
    # 2. committed results are never a default output, nor replaced unless told
    Cli("reproduce onto an existing result", "reproduce", [], 2,
        "res.json exists: add --force to replace it", setup=existing("res.json")),
    Cli("reproduce onto an existing figure", "reproduce", [], 2, "res.png exists: add --force",
        setup=existing("res.png")),
    Cli("reproduce --resume without a partial file, onto a result", "reproduce", ["--resume"], 2,
        "res.md exists: add --force to replace it (or --resume, if an interrupted run left "
        "res.partial.json)", setup=existing("res.md")),
    Cli("compare onto an existing result", "compare", [], 2, "cmp.json exists: add --force",
        setup=existing("cmp.json")),
    Cli("train onto an earlier run's checkpoint", "train", [], 2,
        "t.npz exists: add --force to replace it (or --resume to continue that run)",
        setup=existing("t.npz")),
    Cli("train onto an earlier run's best checkpoint", "train", [], 2, "t_best.npz exists",
        setup=existing("t_best.npz")),
    Cli("bench onto an existing result", "bench", [], 2, "bench.json exists: add --force",
        setup=existing("bench.json")),
    Cli("build_slice onto an existing slice", "build_slice", ["--src", "{tmp}"], 2,
        "slice.npz exists: add --force", setup=existing("slice.npz")),
    Cli("bundle_model onto an existing model", "bundle_model", ["{ckpt}"], 2,
        "bundled.npz exists: add --force", setup=existing("bundled.npz")),
    Cli("merge_results onto an existing table", "merge_results", ["{resA}"], 2,
        "merged.json exists: add --force", setup=existing("merged.json")),
    # 3. one run per output: a live run's lock is named with its pid
    Cli("reproduce while another run writes the same output", "reproduce", [], 2,
        "res is in use by another run (pid", setup=live_lock("res.lock")),
    Cli("compare while another run writes the same output", "compare", [], 2,
        "cmp is in use by another run (pid", setup=live_lock("cmp.lock")),
    Cli("train while another run writes the same checkpoint", "train", [], 2,
        "t.npz is in use by another run (pid", setup=live_lock("t.npz.lock")),
    Cli("demo on the spot while another demo trains in --workdir", "demo",
        ["--n-test", "5", "--n-calib", "5", "--T", "2", "--variants", "snn", "--workdir", "{tmp}"],
        2, "--workdir {tmp} is in use by another run (pid", patch=no_bundled_model,
        setup=live_lock(".demo.lock"), base=False),
    Cli("demo on the spot while another demo trains there (both its locks: the workdir's and its "
        "checkpoint's)", "demo",
        ["--n-test", "5", "--n-calib", "5", "--T", "2", "--variants", "snn", "--workdir", "{tmp}"],
        2, "--workdir {tmp} is in use by another run (pid", patch=no_bundled_model,
        setup=live_lock(".demo.lock", "demo_vgg_cpu_cifar10-slice.npz.lock"), base=False),
    Cli("merge_results while another run writes the same table", "merge_results", ["{resA}"], 2,
        "merged is in use by another run (pid", setup=live_lock("merged.lock")),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


def _held(d):
    live_lock("api.lock")(None, d)
    try:
        with exclusive(d / "api"):
            pass
    finally:
        (d / "api.lock").unlink()


def _names(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_reproduce_writes_to_the_untracked_runs_folder_and_replaces_only_when_told(
        files, tmp_path, capsys, monkeypatch):
    """Without --out the table goes to runs/ (gitignored), not to results/; a second run
    is refused, --force replaces the three files; no lock or partial file stays behind."""
    monkeypatch.chdir(tmp_path)
    argv = fill([a for a in BASE["reproduce"] if "{tmp}/res" not in a and a != "--out"], files, tmp_path)
    assert reproduce.main(argv) == 0
    stem = f"runs/{files['ckpt'].stem}_cifar10-slice"
    assert _names(tmp_path) == [f"{stem}.json", f"{stem}.md", f"{stem}.png"]
    first = (tmp_path / f"{stem}.json").read_bytes()
    capsys.readouterr()
    assert reproduce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (f"error: --out {stem}.json exists: add --force to replace "
                                               f"it (or --resume, if an interrupted run left "
                                               f"{Path(stem).name}.partial.json), or name another --out")
    assert (tmp_path / f"{stem}.json").read_bytes() == first
    assert reproduce.main(argv + ["--force", "--seed", "1"]) == 0
    assert (tmp_path / f"{stem}.json").read_bytes() != first
    assert _names(tmp_path) == [f"{stem}.json", f"{stem}.md", f"{stem}.png"]
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{stem}.json"], cwd=ROOT)
    assert ignored.returncode == 0 or not (ROOT / ".git").exists()       # runs/ is not tracked


def test_a_stale_lock_is_taken_over_with_a_note(files, tmp_path, capsys):
    """A lock whose process no longer runs (a killed run) does not block the next run."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "res.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    assert reproduce.main(fill(BASE["reproduce"], files, tmp_path)) == 0
    err = capsys.readouterr().err
    assert f"note: took over the stale lock {tmp_path / 'res.lock'} (pid {dead.pid} is no longer running)" in err
    assert not (tmp_path / "res.lock").exists() and (tmp_path / "res.json").is_file()


def test_a_second_run_is_refused_while_the_first_holds_the_output(files, tmp_path, capsys):
    """A live process holds res (a second process, as a concurrent run would); reproduce on
    the same --out stops naming its pid; once it is killed, its lock is taken over."""
    holder = holding(tmp_path / "res")
    try:
        assert reproduce.main(fill(BASE["reproduce"], files, tmp_path)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {tmp_path / 'res'} is in use by another run (pid {holder.pid}")
    finally:
        holder.kill()                                   # killed: its lock stays, stale
        holder.wait()
    assert (tmp_path / "res.lock").exists() and not (tmp_path / "res.json").exists()
    assert reproduce.main(fill(BASE["reproduce"], files, tmp_path)) == 0
    assert f"took over the stale lock {tmp_path / 'res.lock'} (pid {holder.pid}" in capsys.readouterr().err


@pytest.mark.parametrize("command, stem, existing", [("train", "t.npz", ["t.npz", "t_best.npz"]),
                                                      ("reproduce", "res", ["res.json"])])
def test_a_live_run_is_named_before_its_existing_outputs(command, stem, existing, files, tmp_path, capsys):
    """While a live run holds the output and has already written files there, a second run is
    told the output is in use, not that it exists (whose --force or --resume would collide)."""
    for name in existing:
        (tmp_path / name).write_bytes(b"written by the live run")
    holder = holding(tmp_path / stem)
    try:
        main = MAINS[command]
        assert main(fill(BASE[command], files, tmp_path)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {tmp_path / stem} is in use by another run (pid {holder.pid}"), err
    finally:
        holder.kill()
        holder.wait()


def test_the_files_of_a_table_are_written_all_or_none(tmp_path):
    """An interruption while the three files are written leaves the earlier three whole and
    no temporary file."""
    old = {tmp_path / f"t{ext}": b"earlier" for ext in (".json", ".md", ".png")}
    for p, b in old.items():
        p.write_bytes(b)

    def fails(f):
        f.write(b"half a fig")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write_all({tmp_path / "t.json": b"new", tmp_path / "t.md": b"new", tmp_path / "t.png": fails})
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == old


API = [
    Api("a live run holds the output (exclusive)", lambda e: _held(e.files["dir"]), ValueError,
        "is in use by another run (pid"),
]


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    check_api_case(c, env, files)
