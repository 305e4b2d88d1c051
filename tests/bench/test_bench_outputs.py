"""``python -m icsnn_np.bench`` writes its outputs where it says: ``--out STEM`` is STEM.json
(the results) and STEM.md (the tables), an ``--out`` ending in .json or .md is taken as its
stem with a note, two outputs naming one file are refused before any work, and the paths
written are printed."""
from __future__ import annotations

import json

import pytest

from icsnn_np.bench import __main__ as bench_cli


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real quick run (SNN part only) with ``--out STEM``: (its folder, stderr's lines)."""
    folder = tmp_path_factory.mktemp("bench_out")
    err = []
    mp = pytest.MonkeyPatch()
    mp.setattr(bench_cli.cli, "log_stderr", err.append)
    mp.setattr("builtins.print", lambda *a, **k: None)
    try:
        rc = bench_cli.main(["--quick", "--no-torch", "--repeats", "1", "--only", "snn",
                             "--out", str(folder / "b")])
    finally:
        mp.undo()
    assert rc == 0
    return folder, err


def test_out_stem_writes_json_and_markdown_beside_each_other(measured):
    folder, err = measured
    res = json.loads((folder / "b.json").read_text())           # valid JSON
    assert res["snn"]["ours_rate"] > 0
    assert "SNN inference" in (folder / "b.md").read_text()
    assert err[-1] == f"wrote {folder / 'b.json'} and {folder / 'b.md'}"


@pytest.fixture
def replay(measured, monkeypatch):
    """The command line with the measured results in place of a new measurement (its table
    goes to stdout, captured by capsys)."""
    res = json.loads((measured[0] / "b.json").read_text())
    monkeypatch.setattr(bench_cli, "run", lambda cfg, only, log: res)


@pytest.mark.parametrize("ext", [".md", ".json", ".JSON"])
def test_out_with_an_extension_is_taken_as_its_stem_with_a_note(replay, tmp_path, ext, capsys):
    out = tmp_path / "o" / f"b{ext}"
    assert bench_cli.main(["--quick", "--no-torch", "--out", str(out)]) == 0
    stem = tmp_path / "o" / "b"
    assert json.loads((tmp_path / "o" / "b.json").read_text())["snn"]
    assert (tmp_path / "o" / "b.md").read_text().startswith("# Benchmark")
    err = capsys.readouterr().err
    assert f"note: --out {out} is taken as the stem {stem}" in err


@pytest.mark.parametrize("out, md", [("X.json", "X.json"), ("X", "X.json"), ("X.md", "X.json")])
def test_two_outputs_naming_one_file_are_refused(replay, tmp_path, monkeypatch, out, md, capsys):
    monkeypatch.chdir(tmp_path)
    assert bench_cli.main(["--quick", "--no-torch", "--out", out, "--md", md]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names the JSON output X.json too" in err[0]
    assert not list(tmp_path.iterdir())


def test_an_existing_folder_as_stem_is_refused(replay, tmp_path, capsys):
    assert bench_cli.main(["--quick", "--no-torch", "--out", str(tmp_path)]) == 2
    assert "is an existing folder; name a stem" in capsys.readouterr().err
