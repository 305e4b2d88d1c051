"""Progress with an ETA for long simulations: a run of hours never runs silently.

    with progress.tracking(total=n_images * T * runs, log=log):   # e.g. evaluate_conversion
        ...                                                       # simulate() reports its work

The work is counted in *image-steps* (one image through the network for one time step):
the simulator of ``engine.py`` calls ``advance(images * steps)`` after every simulation
(a batch), which costs one clock read. Without an active tracker nothing is printed; with one,
a line "progress: 3.1% ... ETA 2 h 10 min" goes to ``log`` first after FIRST_REPORT_S
seconds, then about every tenth of the time elapsed so far (at least EVERY_S, at most 10 min
apart), so a short run prints nothing extra and a long one a few dozen lines.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

_active = None
FIRST_REPORT_S = 10.0      # the first line after this many seconds
EVERY_S = 30.0             # then at least this far apart


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3 h 05 min'."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class Tracker:
    """Counts image-steps done of ``total`` and reports an ETA now and then."""

    def __init__(self, total: float, log, first_s: float | None = None,
                 every_s: float | None = None, what: str = "simulation"):
        self.total, self.log, self.what = max(1.0, float(total)), log, what
        self.first_s = FIRST_REPORT_S if first_s is None else first_s
        self.every_s = EVERY_S if every_s is None else every_s
        self.done = 0.0
        self.t0 = time.perf_counter()
        self.next = self.t0 + self.first_s

    def eta(self) -> float:
        """Seconds left at the rate so far (inf before any work is done)."""
        el = time.perf_counter() - self.t0
        return el / self.done * max(0.0, self.total - self.done) if self.done else float("inf")

    def advance(self, n: float):
        self.done += n
        now = time.perf_counter()
        if now >= self.next:
            el = now - self.t0
            self.next = now + min(600.0, max(self.every_s, 0.1 * el))
            self.log(f"progress: {100 * min(1.0, self.done / self.total):.1f}% of the {self.what} "
                     f"({self.done:,.0f} of ~{self.total:,.0f} image-steps) in {duration(el)}, "
                     f"ETA {duration(self.eta())}")


@contextmanager
def tracking(total: float, log, **kw):
    """Report the progress of the simulations run inside the block to ``log``; yields the
    Tracker. Nested blocks report to the innermost one."""
    global _active
    outer, _active = _active, Tracker(total, log, **kw)
    try:
        yield _active
    finally:
        _active = outer


def advance(n: float):
    """``n`` image-steps done (called by the simulation engines)."""
    if _active is not None:
        _active.advance(n)
