"""Which engine runs a simulation: the one place that chooses, by one name.

    sim = simulator("fast")                    # simulate's signature, the fast engine behind it
    res = sim(snn, x, T, count=True)

``reference`` is the core's step-by-step ``simulate`` (the teaching path); ``fast`` is
``icsnn_np.fast`` (Winograd convolutions, time chunks, threads), tested to give the same
spikes. The core API is always the reference; everything that runs experiments (this layer,
every command) defaults to ``fast``, because it computes the same thing sooner.

Before each run the memory it needs is estimated (resources.py): a run that cannot fit is
refused with the chunk or batch that would; after each run the progress tracker advances.
"""
from __future__ import annotations

import contextlib
import functools

from ..checks import check_choice
from ..fast.engine import DEFAULT_CHUNK, simulate_fast
from ..fast.layers import accelerate
from ..fast.threads import hold_blas
from ..simulate import check_input, simulate
from .progress import advance
from .inputs import check_image_size
from .resources import check_memory

ENGINES = ("reference", "fast")
DEFAULT_ENGINE = "fast"


def simulator(engine: str = DEFAULT_ENGINE, chunk: int | None = None, check: bool = True):
    """A function with the core ``simulate``'s signature that runs ``engine`` (``chunk``: the
    fast engine's time steps per layer pass), checks memory first and reports progress."""
    check_choice(engine, ENGINES, "engine")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be >= 1 (an integer number of time steps), got {chunk!r}")
    run = simulate if engine == "reference" else functools.partial(
        simulate_fast, chunk=DEFAULT_CHUNK if chunk is None else chunk)

    def sim(snn, x, T, **kw):
        T = check_input(snn, x, T, kw.get("coding", "direct"), kw.get("mean"), kw.get("std"))
        check_image_size(snn.tree, x, "the input batch")      # the image size, said plainly
        if check:
            check_memory(snn, x, T, engine, chunk, kw.get("count", False), kw.get("record", False))
        res = run(snn, x, T, **kw)
        advance(len(x) * T)                    # progress.py: image-steps done
        return res

    return sim


def training_network(model, engine: str = DEFAULT_ENGINE):
    """(the network a training step runs, the context to run it in): the model itself, or
    its fast twin sharing its parameters with the BLAS held to one thread (fast/threads.py)."""
    check_choice(engine, ENGINES, "engine")
    if engine == "reference":
        return model, contextlib.nullcontext()
    return accelerate(model), hold_blas()
