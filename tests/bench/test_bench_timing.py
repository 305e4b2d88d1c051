"""How the benchmark times and reports (issue 35): ours and PyTorch alternate call by call
after one warm-up each; each side's median, min and max; ratios of medians; the targets'
thresholds; the machine record (caches, the engine's threads, load before and after).

Checked with a fake clock and fake callables: no real time is measured or asserted.
"""
from __future__ import annotations

import pytest

from icsnn_np.bench import measure, report
from icsnn_np.bench.measure import spread, time_alternating, time_it
from icsnn_np.fast.cache import cache_sizes
from icsnn_np.fast.threads import num_workers


class FakeTime:
    """A clock that moves only when a fake callable runs: each call of ``fn(name)`` logs the
    name and takes the next of that name's durations."""

    def __init__(self, durations):
        self.now, self.log, self.left = 0.0, [], {k: list(v) for k, v in durations.items()}

    def __call__(self):
        return self.now

    def fn(self, name):
        def call():
            self.log.append(name)
            self.now += self.left[name].pop(0)
        return call


def test_two_callables_alternate_after_one_warm_up_each():
    t = FakeTime({"ours": [100.0, 3.0, 1.0, 2.0], "torch": [500.0, 10.0, 30.0, 20.0]})
    got = time_alternating([("ours", t.fn("ours"), measure.np), ("torch", t.fn("torch"), measure.np)],
                           3, clock=t)
    assert t.log == ["ours", "torch"] * 4                  # warm-ups, then 3 rounds
    assert got["ours"] == {"median": 2.0, "min": 1.0, "max": 3.0, "best": 1.0, "all": [3.0, 1.0, 2.0]}
    assert got["torch"]["all"] == [10.0, 30.0, 20.0]       # the warm-ups are not counted
    assert got["torch"]["median"] / got["ours"]["median"] == 10.0


def test_three_callables_keep_their_order_in_every_round():
    t = FakeTime({k: [1.0] * 3 for k in "abc"})
    time_alternating([(k, t.fn(k), measure.np) for k in "abc"], 2, clock=t)
    assert t.log == ["a", "b", "c"] * 3


def test_time_it_runs_its_calls_in_a_row():
    t = FakeTime({"a": [9.0, 4.0, 2.0, 6.0, 8.0]})
    got = time_it(t.fn("a"), 4, clock=t)
    assert t.log == ["a"] * 5 and got["all"] == [4.0, 2.0, 6.0, 8.0]
    assert (got["median"], got["min"], got["max"], got["best"]) == (5.0, 2.0, 8.0, 2.0)


@pytest.mark.parametrize("calls", [[], [("a", lambda: None, measure.np)] * 2])
def test_time_alternating_refuses_no_callables_or_a_name_twice(calls):
    with pytest.raises(ValueError, match="distinct names"):
        time_alternating(calls, 2)


def test_spread_median_and_range():
    assert spread([3, 1, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "best": 1.0, "all": [3.0, 1.0, 2.0]}
    assert spread([4.0, 1.0, 3.0, 2.0])["median"] == 2.5
    assert spread([7.0]) == {"median": 7.0, "min": 7.0, "max": 7.0, "best": 7.0, "all": [7.0]}
    with pytest.raises(ValueError, match="at least one time"):
        spread([])


def test_rates_come_from_the_median_and_the_range_from_the_extremes():
    from icsnn_np.bench.parts import rates
    r = rates(100, "ours", spread([0.5, 0.25, 0.4]))
    assert r == {"ours_rate": 250.0, "ours_rate_range": [200.0, 400.0]}


def result(snn_ratio=1.6, agreement=0.98, conv=0.7, train=1.0):
    return {"snn": {"ratio": snn_ratio, "agreement": agreement},
            "gemm": {"conv_fraction_of_matmul": conv}, "train": {"ratio": train}}


@pytest.mark.parametrize("kw, name, met", [
    ({}, "snn_vs_torch", True), ({"snn_ratio": 1.59}, "snn_vs_torch", False),
    ({"agreement": 0.97}, "snn_vs_torch", False), ({"snn_ratio": 1.3, "agreement": 1.0}, "snn_vs_torch", False),
    ({}, "conv_vs_matmul", True), ({"conv": 0.69}, "conv_vs_matmul", False),
    ({}, "train_vs_torch", True), ({"train": 0.99}, "train_vs_torch", False)])
def test_the_targets_are_issue_35s(kw, name, met):
    got = report.check_targets(result(**kw))
    assert got[name]["met"] is met and got[name]["target"] == report.TARGETS[name]
    assert "1.6x" in report.TARGETS["snn_vs_torch"] and "98 %" in report.TARGETS["snn_vs_torch"]
    assert "1.0x" in report.TARGETS["train_vs_torch"] and "70 %" in report.TARGETS["conv_vs_matmul"]


def test_the_tables_show_medians_ranges_and_fractions_of_the_matmul():
    s = spread([0.5, 0.25, 0.4])
    res = {"snn": {"model": "m", "batch": 2, "T": 4, "chunk": 2, "timing": "alternating",
                   "order": ["ours", "torch"], "repeats": 3, "ours_s": s, "ours_rate": 250.0,
                   "ours_rate_range": [200.0, 400.0], "torch_rate": 125.0,
                   "torch_rate_range": [100.0, 150.0], "ratio": 2.0, "agreement": 1.0},
           "gemm": {"matmul_n": 8, "matmul_gflops": 200.0, "conv_gflops": 100.0,
                    "conv_fraction_of_matmul": 0.5, "engine_layers_gflops": 150.0,
                    "engine_conv_gflops": 120.0, "engine_fraction_of_matmul": 0.6,
                    "conv_layers": [{"layer": "Conv2d(a)", "input": [1, 2, 3, 3], "gflops": 90.0,
                                     "engine_gflops": 250.0, "winograd": True}]}}
    text = report.table(res)
    assert "| fast engine (Winograd convs) | 250 (200-400) | 125 (100-150) | 2.00x | 100.0 % |" in text
    assert "3 rounds of alternating calls (fast engine, PyTorch)" in text
    assert "| im2col / matmul |" in text and "| engine / matmul |" in text
    assert "| Conv2d(a) | 1x2x3x3 | 90 | 45 % | 250 (winograd) | 125 % |" in text
    assert "| all convs | | 100 | 50 % | 150 | 75 % |" in text
    assert "| whole engine (conv FLOPs / simulate time) | | | | 120 | 60 % |" in text


def test_the_machine_record_has_the_caches_the_threads_and_the_load():
    m = measure.machine_info(measure.np)
    assert m["caches"] == cache_sizes() and m["engine_threads"] == num_workers()
    assert m["cpu_count"] and isinstance(m["blas"]["threads"], int)
    m["load_avg_after"] = [0.5, 0.25, 0.125]
    m["caches"] = {"L1d": 48 << 10, "L2": 2 << 20, "L3": None}
    md = report.machine_md(m)
    assert "data caches (cpu0): L1d 48 KiB, L2 2 MiB, L3 ?" in md
    assert f"fast engine: {num_workers()} threads" in md
    assert "after: 0.50, 0.25, 0.12" in md and "load average before: " in md


def test_a_machine_without_load_average_or_caches_still_renders(monkeypatch):
    monkeypatch.delattr(measure.os, "getloadavg")          # as on Windows
    assert measure.load_avg() is None
    m = measure.machine_info(measure.np)
    m.pop("caches")
    md = report.machine_md(m)
    assert "load average before: unknown; after: unknown" in md and "L1d ?" in md
