"""The reproduction's tables: per-image records, McNemar's paired test, the depth table."""
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import load_script

from icsnn_np.runs.tables import PAPER_ORDER, markdown, mcnemar, pack_correct, paired_section, unpack_correct

depth_table = load_script("depth_table")
merge_results = load_script("merge_results")


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_pack_correct_round_trips(bits):
    assert unpack_correct(pack_correct(bits), len(bits)).tolist() == bits


def test_mcnemar_matches_the_binomial_tail_by_hand():
    """10 images only a gets right, 2 only b: p = 2 * P(X <= 2), X ~ Binomial(12, 1/2)
    = 2 * (1 + 12 + 66) / 4096; the 30 concordant images change nothing."""
    a = np.array([1] * 10 + [0] * 2 + [1] * 20 + [0] * 10, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 20 + [0] * 10, bool)
    assert mcnemar(a, b) == (10, 2, pytest.approx(2 * 79 / 4096, rel=1e-12))


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_mcnemar_is_symmetric_and_a_probability(pairs):
    a, b = (np.array(x, bool) for x in zip(*pairs))
    ab, ba = mcnemar(a, b), mcnemar(b, a)
    assert (ab[0], ab[1]) == (ba[1], ba[0]) and ab[2] == ba[2]
    assert 0 < ab[2] <= 1
    assert (ab[2] == 1.0) == (abs(ab[0] - ab[1]) <= 1)     # balanced discordance: no evidence


def test_mcnemar_on_two_thousand_images_has_no_overflow():
    """The tail is summed in exact integers: 2**2000 overflows a float."""
    a = np.zeros(2000, bool)
    a[:1100] = True
    only_a, only_b, p = mcnemar(a, ~a)
    assert (only_a, only_b) == (1100, 900) and 0 < p < 1e-5
    z = (1100 - 900) / math.sqrt(2000)                   # the normal approximation agrees
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.2)


def _result(correct_by_label, n):
    rows = [{"label": lab, "variant": lab.lower(), "setting": "", "reading": "remainder",
             "granularity": "layer", "comp": "literal",
             "T": {"8": {"acc": 100.0 * c.mean(), "loss": 100.0 * (1 - c.mean()),
                         "correct": pack_correct(c)}}}
            for lab, c in correct_by_label.items()]
    return {"ann_acc": 100.0, "n_test": n, "rows": rows, "seconds": 1.0}


def test_paired_section_says_where_the_order_holds_and_where_it_fails():
    """IC-SNN right on 400 images more than I-SNN; I-SNN and C-SNN on the same images;
    C-SNN right on 300 fewer than SNN: the first step holds, the second is not told apart,
    the third is reversed."""
    n = 2000
    ic = np.arange(n) < 1500
    i = c = np.arange(n) < 1100
    snn = np.arange(n) < 1400
    lines = paired_section(_result(dict(zip(PAPER_ORDER, (ic, i, c, snn))), n))
    row = next(ln for ln in lines if ln.startswith("| 8 |"))
    assert "-20.00 (p=" in row and "+0.00 (p=1)" in row and "+15.00 (p=" in row
    assert row.endswith("fails: I-SNN vs C-SNN tie, C-SNN vs SNN reversed |")
    ordered = paired_section(_result(dict(zip(PAPER_ORDER, (ic, snn, i, np.arange(n) < 600))), n))
    assert next(ln for ln in ordered if ln.startswith("| 8 |")).endswith("| holds |")


def test_markdown_of_old_results_without_records_has_no_paired_section():
    res = _result({lab: np.ones(4, bool) for lab in PAPER_ORDER}, 4)
    for r in res["rows"]:
        del r["T"]["8"]["correct"]
    md = markdown(res, {"title": "t", "settings": {}, "command": "c"})
    assert "McNemar" not in md and "| SNN |" in md


def _reproduction(tmp_path, name, arch, ann, Ts, block="node", labels=PAPER_ORDER):
    rows = [{"label": lab, "variant": lab.lower(), "setting": f"block {block}", "block": block,
             "T": {str(t): {"acc": ann - k - t / 100, "loss": k + t / 100} for t in Ts}}
            for k, lab in enumerate(labels)]
    path = tmp_path / name
    path.write_text(json.dumps({"ann_acc": ann, "n_test": 2000, "rows": rows, "arch": arch,
                                "settings": {"model": arch, "block treatment": block, "p": 0.99}}))
    return path


def test_depth_table_merges_the_files_of_one_network(tmp_path, capsys):
    """T <= 32 and T = 64 from two files of resnet20 land in one row per variant and block
    treatment, beside the paper's Table 4; the table names the IF layers."""
    low = _reproduction(tmp_path, "low.json", "resnet20", 88.0, (8, 32))
    high = _reproduction(tmp_path, "high.json", "resnet20", 88.0, (64,))
    paper = _reproduction(tmp_path, "paper.json", "resnet20", 88.0, (8,), block="paper")
    assert depth_table.main([str(low), str(high), str(paper)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| network | variant | T=8 | T=32 | T=64 |"
    assert ("(19 IF layers), ANN 88.00 % on 2,000 images, layer-wise V_th, p = 0.99 | SNN (block node) "
            "| 3.08 | 3.32 | 3.64 |") in out[2]
    assert "| IC-SNN (block paper) | 0.08 |  |  |" in out[9]
    assert "paper, Table 4, ResNet20, ANN 91.46 %" in out[10] and "37.31" in out[12]


def test_depth_table_prints_a_paper_table_once_after_the_nets_that_share_it(tmp_path, capsys):
    """vgg_cpu and vgg16_cpu both scale down the paper's VGG16: Table 2 once, after both."""
    a = _reproduction(tmp_path, "a.json", "vgg_cpu", 85.0, (8,))
    b = _reproduction(tmp_path, "b.json", "vgg16_cpu", 86.0, (8,))
    assert depth_table.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [i for i, line in enumerate(out) if "paper, Table 2" in line] == [10]
    assert "**vgg16_cpu** (15 IF layers)" in out[6] and "9.95" in out[12]


def test_depth_table_refuses_files_of_different_runs(tmp_path, capsys):
    a = _reproduction(tmp_path, "a.json", "vgg_cpu", 85.0, (8,))
    b = _reproduction(tmp_path, "b.json", "vgg_cpu", 86.0, (16,))
    assert depth_table.main([str(a), str(b)]) == 2
    assert "not the same run" in capsys.readouterr().err


def _measured(tmp_path, name, Ts, block="node", seed=0, acc_shift=0.0, command="run"):
    """A reproduction JSON of resnet20 on 40 images: the paper's four rows at Ts, with which
    images each row got right (a seeded draw per row and T, the same in every file)."""
    n, rows = 40, []
    for k, lab in enumerate(PAPER_ORDER):
        T = {}
        for t in Ts:
            c = np.random.default_rng([seed, k, t]).random(n) < 0.5 + 0.1 * k
            T[str(t)] = {"acc": 100.0 * c.mean() + acc_shift, "loss": 100.0 * (1 - c.mean()),
                         "correct": pack_correct(c)}
        rows.append({"label": lab, "variant": lab.lower(), "setting": "", "p": 0.99,
                     "thresholds": "layer", "block": block, "reading": "remainder",
                     "comp": "literal", "granularity": "layer", "T": T})
    settings = {"model": "resnet20", "checkpoint": "resnet20", "images": f"the first {n} images",
                "n_calib": 8, "seed": 0, "coding": "direct", "p": "0.99", "thresholds": "layer",
                "default reading": "remainder", "default granularity": "layer",
                "default compensation": "literal", "block treatment": block, "engine": "fast"}
    path = tmp_path / name
    path.write_text(json.dumps({"ann_acc": 100.0, "n_test": n, "n_calib": 8, "rows": rows,
                                "arch": "resnet20", "settings": settings, "command": command,
                                "seconds": 60.0}))
    return path


def test_merge_results_joins_the_T_columns_of_separate_runs(tmp_path):
    """T = 8 (node and paper blocks) and T = 64 (node) from three runs: one row per variant
    and block, the T = 64 measurements in the node rows, paired tests at T = 64 too; merging
    a file into itself changes nothing."""
    low = _measured(tmp_path, "low.json", (8,), command="a")
    paper = _measured(tmp_path, "paper.json", (8,), block="paper", command="b")
    high = _measured(tmp_path, "high.json", (64,), command="c")
    out = tmp_path / "all"
    assert merge_results.main([str(low), str(paper), str(high), "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert [(r["label"], r["setting"], list(r["T"])) for r in res["rows"]][:2] == [
        (PAPER_ORDER[0], "block node", ["8", "64"]), (PAPER_ORDER[1], "block node", ["8", "64"])]
    assert [r["setting"] for r in res["rows"]][4:] == ["block paper"] * 4
    high_rows = json.loads(high.read_text())["rows"]
    assert res["rows"][3]["T"]["64"] == high_rows[3]["T"]["64"]
    assert res["settings"]["block treatment"] == "node/paper" and res["command"] == "a && b && c"
    assert res["seconds"] == 180.0
    md = out.with_suffix(".md").read_text()
    assert "| 64 | " in md and "Paired comparisons (block paper)" in md and out.with_suffix(".png").exists()
    assert merge_results.main([str(out.with_suffix(".json")), str(high), "--out", str(out)]) == 2
    assert merge_results.main([str(out.with_suffix(".json")), str(high), "--out", str(out),
                               "--force"]) == 0        # an existing output: replaced when told
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["rows"] == res["rows"] and (again["seconds"], again["merged_runs"]) == (180.0, 3)
    assert "Wall time: 3.0 min, the sum of 3 runs made side by side." in md


def test_merge_results_refuses_other_images_and_disagreeing_measurements(tmp_path, capsys):
    a = _measured(tmp_path, "a.json", (8,))
    out = tmp_path / "out"
    other = json.loads(a.read_text())
    other["ann_acc"] = 99.0
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert merge_results.main([str(a), str(tmp_path / "b.json"), "--out", str(out)]) == 2
    assert "not the same network and images" in capsys.readouterr().err
    shifted = _measured(tmp_path, "c.json", (8,), acc_shift=0.5)
    assert merge_results.main([str(a), str(shifted), "--out", str(out)]) == 2
    assert "SNN at T = 8 differs" in capsys.readouterr().err
    (tmp_path / "d.json").write_text("{}")
    assert merge_results.main([str(a), str(tmp_path / "d.json"), "--out", str(out)]) == 2
    assert "d.json: not a reproduction result (no ann_acc" in capsys.readouterr().err
    assert not list(tmp_path.glob("out*"))                 # nothing written on a refusal
