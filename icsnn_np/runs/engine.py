"""Which engine runs a simulation: the one place that chooses, by one name.

    use_engine(snn, "fast")                    # snn.run(x, T) now runs the fast engine
    res = snn.run(x, T, count=True)

``reference`` is the core's step-by-step ``simulate`` (the teaching path); ``fast`` is
``icsnn_np.fast`` (Winograd convolutions, time chunks, threads), tested to give the same
spikes. A converted SNN carries its engine (``snn.engine``, convert.py): the core's own
functions (Alg. 2, the variants) run whatever the SNN carries, and this module plugs the
fast one in from outside, once. The core API is always the reference; everything that runs
experiments (this layer, every command) defaults to ``fast``: the same thing, sooner.

Before each run the engine checks T and the images once, estimates the memory it needs
(resources.py: a run that cannot fit is refused with the chunk or batch that would) and
reports its progress as it goes (progress.py: after every step, or chunk of steps), so a
long simulation shows an ETA early.
"""
from __future__ import annotations

import contextlib
import copy

from ..checks import check_choice
from ..fast.engine import DEFAULT_CHUNK, simulate_fast
from ..fast.layers import accelerate
from ..fast.threads import hold_blas
from ..module import Module
from ..simulate import check_input, simulate
from .progress import advance
from .resources import check_memory

ENGINES = ("reference", "fast")
DEFAULT_ENGINE = "fast"


class Tick(Module):
    """Passes the output layer's input through, and counts one step of ``n`` images
    (progress.py): the teaching loop reports its progress step by step, unchanged."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, h):
        advance(self.n)
        return h


class Engine:
    """A simulation engine an SNN carries (``snn.engine``): called with the core
    ``simulate``'s arguments, it checks them once, checks memory, runs ``engine`` (with
    ``chunk`` time steps per layer pass for the fast one) and reports progress."""

    def __init__(self, engine: str = DEFAULT_ENGINE, chunk: int | None = None, check: bool = True):
        check_choice(engine, ENGINES, "engine")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be >= 1 (an integer number of time steps), got {chunk!r}")
        self.name, self.chunk, self.check = engine, chunk, check

    def __repr__(self):
        return f"Engine({self.name!r}, chunk={self.chunk})"

    def __call__(self, snn, x, T, **kw):
        T = check_input(snn, x, T, kw.get("coding", "direct"), kw.get("mean"), kw.get("std"))
        if self.check:
            check_memory(snn, x, T, self.name, self.chunk, kw.get("count", False),
                         kw.get("record", False))
        if self.name == "reference":             # the teaching loop, with a step counter at its end
            ticked = copy.copy(snn)
            ticked.flat = snn.flat + [Tick(len(x))]
            return simulate(ticked, x, T, **kw)
        chunk = DEFAULT_CHUNK if self.chunk is None else self.chunk
        return simulate_fast(snn, x, T, chunk=chunk, progress=advance, **kw)


def simulator(engine: str = DEFAULT_ENGINE, chunk: int | None = None, check: bool = True):
    """An ``Engine``: a function with the core ``simulate``'s signature."""
    return Engine(engine, chunk, check)


def use_engine(snn, engine: str = DEFAULT_ENGINE, chunk: int | None = None, coding=None):
    """Let ``snn.run`` (and so Alg. 2, the variants, the methods) simulate with ``engine``
    and, when given, the input ``coding`` ({coding, mean, std, seed}); returns the SNN."""
    snn.engine = engine if callable(engine) else Engine(engine, chunk)
    if coding is not None:
        snn.coding = {k: v for k, v in dict(coding).items() if v is not None}
    return snn


def training_network(model, engine: str = DEFAULT_ENGINE):
    """(the network a training step runs, the context to run it in): the model itself, or
    its fast twin sharing its parameters with the BLAS held to one thread (fast/threads.py)."""
    check_choice(engine, ENGINES, "engine")
    if engine == "reference":
        return model, contextlib.nullcontext()
    return accelerate(model), hold_blas()
