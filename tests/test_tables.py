"""The reproduction's tables: per-image records, McNemar's paired test, the depth table."""
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import load_script

from icsnn_np.tables import PAPER_ORDER, markdown, mcnemar, pack_correct, paired_section, unpack_correct

depth_table = load_script("depth_table")


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
                                "settings": {"model": arch, "block treatment": block}}))
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
    assert "(19 IF layers), ANN 88.00 % on 2,000 images | SNN (block node) | 3.08 | 3.32 | 3.64 |" in out[2]
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
