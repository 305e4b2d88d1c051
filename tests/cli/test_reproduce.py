"""The reproduction CLI (icsnn_np.cli.reproduce), end to end on tiny sizes (real bundled slice,
small model: the ``tiny_ckpt`` fixture, tests/cli/conftest.py): table, JSON and figure, a
setting measured once, an interrupted run resumed."""
import json

import numpy as np
import pytest

from icsnn_np.cli import reproduce
from icsnn_np.runs import reproduce as reproduce_run


def test_reproduce_writes_table_json_and_figure(tiny_ckpt, tmp_path):
    out = tmp_path / "res"
    rc = reproduce.main(["--checkpoint", str(tiny_ckpt), "--dataset", "cifar10-slice",
                         "--n-test", "20", "--n-calib", "10", "--T", "4", "8", "--reading-T", "4",
                         "--rows", "0", "1", "2", "3", "5", "--batch-size", "10", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert [r["label"] for r in res["rows"]][:4] == ["SNN", "I-SNN", "C-SNN", "IC-SNN"]
    assert set(res["rows"][0]["T"]) == {"4", "8"} and set(res["rows"][4]["T"]) == {"4"}
    md = out.with_suffix(".md").read_text()
    assert "| SNN |" in md and "T8-L" in md and "seed=0" in md
    from icsnn_np.runs.tables import unpack_correct
    for r in res["rows"]:                  # the per-image record is the accuracy, image by image
        for m in r["T"].values():
            assert 100 * unpack_correct(m["correct"], 20).mean() == pytest.approx(m["acc"], abs=0.006)
    assert "McNemar's exact test" in md and "| 8 |" in md     # the paired comparisons at each T
    quant = res["quantised_ann"][""]                          # the T-level ANN, a reference row
    assert set(quant) == {"4", "8"} and all(0 <= a <= 100 for a in quant.values())
    assert "| *T-level ANN (no SNN)" in md and f"{res['ann_acc'] - quant['8']:.2f}" in md
    from PIL import Image
    with Image.open(out.with_suffix(".png")) as im:
        assert im.size[0] > 100 and np.asarray(im).std() > 0


def test_reproduce_runs_a_setting_once_and_reuses_it_truthfully(tiny_ckpt, tmp_path):
    """'I-SNN remainder' is the I-SNN row under the default reading: measured once, and the
    copy equals what running that row alone gives."""
    common = ["--checkpoint", str(tiny_ckpt), "--dataset", "cifar10-slice", "--n-test", "20",
              "--n-calib", "10", "--T", "4", "--reading-T", "4", "--batch-size", "10"]
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert reproduce.main(common + ["--rows", "1", "6", "--out", str(both)]) == 0
    assert reproduce.main(common + ["--rows", "6", "--out", str(alone)]) == 0
    rows = json.loads(both.with_suffix(".json").read_text())["rows"]
    single = json.loads(alone.with_suffix(".json").read_text())["rows"][0]
    assert rows[1]["T"]["4"]["same_as"] == "I-SNN"
    assert rows[1]["T"]["4"]["acc"] == rows[0]["T"]["4"]["acc"] == single["T"]["4"]["acc"]


RESUME_ARGS = ["--dataset", "cifar10-slice", "--n-test", "20", "--n-calib", "10", "--T", "4", "6",
               "--reading-T", "4", "--rows", "0", "1", "3", "5", "9", "--batch-size", "10"]


def test_reproduce_interrupted_then_resumed_equals_one_sitting(tiny_ckpt, tmp_path, monkeypatch,
                                                               capsys):
    """Ctrl-C after three measurements keeps them in <out>.partial.json; --resume measures
    only the rest, and the table equals the one made in one sitting."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["--checkpoint", str(tiny_ckpt)] + RESUME_ARGS
    assert reproduce.main(common + ["--out", str(whole)]) == 0
    real, calls, stop_at = reproduce_run.snn_correct, [], [4]

    def counted(*args, **kw):           # Ctrl-C on the stop_at-th measurement, if any
        calls.append(1)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(reproduce_run, "snn_correct", counted)
    capsys.readouterr()
    assert reproduce.main(common + ["--out", str(split)]) == 130
    partial = tmp_path / "split.partial.json"
    err = capsys.readouterr().err
    assert "the 3 measurements made so far are in" in err and "--resume" in err
    assert len(json.loads(partial.read_text())["done"]) == 3 and not (tmp_path / "split.json").exists()

    calls.clear()
    stop_at[0] = None
    assert reproduce.main(common + ["--out", str(split), "--resume"]) == 0
    n_measured = 2 * 3 + 2       # SNN, I-SNN, IC-SNN at T=4 and 6; two reading rows at T=4
    assert len(calls) == n_measured - 3          # only what the first sitting had not measured
    assert not partial.exists()                  # the table is written: the partial file goes
    res = [json.loads((tmp_path / f"{s}.json").read_text()) for s in ("whole", "split")]
    rows = [r["rows"] for r in res]
    assert rows[0] == rows[1]
    assert [r["earlier_measurements"] for r in res] == [0, 3]     # the time covers the last sitting
    assert "in the last sitting (3 measurements were made in an earlier one)." in \
        (tmp_path / "split.md").read_text()
    assert set(rows[0][2]["T"]) == {"4", "6"} and set(rows[0][3]["T"]) == {"4"}   # IC-SNN; a reading row


def test_reproduce_resume_refuses_a_partial_file_of_another_run(tiny_ckpt, tmp_path, monkeypatch,
                                                                capsys):
    """Measurements of one command are never mixed into another's table: a partial file
    from other options (or without --resume) is an error that says what to do."""
    out = tmp_path / "res"

    real, calls = reproduce_run.snn_correct, []

    def ctrl_c_on_the_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(reproduce_run, "snn_correct", ctrl_c_on_the_second)
    common = ["--checkpoint", str(tiny_ckpt), "--out", str(out)] + RESUME_ARGS
    assert reproduce.main(common) == 130
    monkeypatch.setattr(reproduce_run, "snn_correct", real)
    capsys.readouterr()
    assert reproduce.main(common) == 2                       # no --resume: not silently redone
    assert "add --resume to continue it" in capsys.readouterr().err
    assert reproduce.main(common + ["--resume", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "was made by a different run (it differs in: seed)" in err
    assert (tmp_path / "res.partial.json").exists() and not (tmp_path / "res.json").exists()
