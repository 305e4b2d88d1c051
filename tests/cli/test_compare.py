"""The comparison of the training-free methods (icsnn_np.cli.compare): its tables count total
steps (pre-run + T), tell the winner apart with a paired test, and ``run_methods`` measures
every row with every threshold search. (The methods themselves: tests/beyond/test_methods.py.)
"""
from __future__ import annotations

import numpy as np
from helpers import images, tiny_vgg

from icsnn_np.runs.compare import ROWS as COMPARE_ROWS
from icsnn_np.runs.compare import at_total, run_methods, winners
from icsnn_np.runs.compare import markdown as compare_markdown
from icsnn_np.runs.evaluate import ConversionConfig


def test_the_comparison_tables_count_total_steps():
    """compare.py: a pre-run row appears at total S = rho + T, the winner is the most
    accurate at S, and the Markdown says pre-run and total beside T."""
    rows = [dict(label="A", variant="c-snn", thresholds="quantile",
                 T={"8": dict(acc=80.0, loss=5.0, prerun=0, steps=8)}),
            dict(label="B", variant="cos", thresholds="quantile",
                 T={"4": dict(acc=82.0, loss=3.0, prerun=4, steps=8),
                    "8": dict(acc=84.0, loss=1.0, prerun=4, steps=12)})]
    res = dict(ann_acc=85.0, n_test=2000, T=[8], prerun=4, rows=rows, seconds=60.0,
               quantised_ann={"quantile": {"8": 84.0}})
    assert at_total(rows[1], 8)["acc"] == 82.0 and at_total(rows[0], 12) is None
    assert winners(res)[8] == [("B", 82.0), ("A", 80.0)]
    md = compare_markdown(res, dict(title="t", data="d", command="c", settings={"p": 0.9}))
    assert "| B | quantile | 4 | T + 4 | 1.00 |" in md and "3.00 (T=4)" in md
    assert "**B**, loss 3.00" in md and "loses 1.00" in md
    assert "SE of the difference" in md         # without per-image records: the unpaired SE


def test_the_comparison_tells_the_winner_apart_with_a_paired_test():
    """With each row's per-image record, the winner at S is compared with the runner-up by
    McNemar's exact test on the same images, not by an unpaired SE: 40 images only B gets
    right against 0 only A gets right is shown; 3 against 1 is not."""
    from icsnn_np.runs.tables import pack_correct

    def result(only_b, only_a):
        a = np.zeros(200, bool)
        a[:100] = True                                   # both right on images 0..99
        b = a.copy()
        b[100:100 + only_b] = True
        a[100 + only_b:100 + only_b + only_a] = True
        rows = [dict(label=lab, variant="snn", thresholds="quantile",
                     T={"8": dict(acc=100 * c.mean(), loss=100 - 100 * c.mean(), prerun=0, steps=8,
                                  correct=pack_correct(c))}) for lab, c in (("A", a), ("B", b))]
        return dict(ann_acc=100.0, n_test=200, T=[8], prerun=0, rows=rows, seconds=1.0)
    meta = dict(title="t", data="d", command="c", settings={"p": 0.9})
    shown = compare_markdown(result(40, 0), meta)
    assert "**B**" in shown and "ahead of A by 20.00 points (McNemar's exact p = 1.8e-12" in shown
    assert "shown)" in shown
    close = compare_markdown(result(3, 1), meta)
    assert "ahead of A by 1.00 points (McNemar's exact p = 0.62 on the same images: not told apart)" in close


def test_run_methods_measures_every_row_with_every_threshold_search():
    net = tiny_vgg(3, widths=(4, 4), hidden=5)
    x, y = images(8, seed=2), np.arange(8) % 3
    cfg = ConversionConfig(n_calib=6, batch_size=4, prerun=2).validate()
    rows = [r for r in COMPARE_ROWS if r[1] in ("snn", "snn-calib", "srp")]
    res = run_methods(net, images(6, seed=4), x, y, cfg, [4, 8], rows=rows, log=lambda s: None)
    assert [(r["variant"], r["thresholds"]) for r in res["rows"]] == [
        (v, t) for t in ("quantile", "mse") for v in ("snn", "snn-calib", "srp")]
    for r in res["rows"]:
        want = [2, 4, 6, 8] if r["variant"] == "srp" else [4, 8]   # + the S - rho runs
        assert sorted(map(int, r["T"])) == want
        assert all(m["steps"] == int(t) + m["prerun"] for t, m in r["T"].items())
    assert set(res["quantised_ann"]) == {"quantile", "mse"}
    assert all(set(a) == {"4", "8"} for a in res["quantised_ann"].values())
