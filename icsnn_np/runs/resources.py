"""How much memory a simulation takes, estimated before it allocates anything.

``simulate`` calls ``check_memory`` once per call, before the first buffer: a run that
cannot fit is refused with the largest ``--chunk`` / ``--batch-size`` that would, instead
of dying in a 122 GiB allocation (or swapping for hours). The estimate, per image, in the
simulation's float type (``b`` bytes; S = values of one sample summed over the IF nodes,
L = the largest layer output, B = summed over the layers the fast engine runs per chunk):

    reference engine   b * (S * states + 12 * L)         the IF state (v; spike counts and
                                                         first-spike times when recorded),
                                                         a layer's input and output and the
                                                         im2col matrix of a 3x3 conv (9 L)
    fast engine        b * (S * states + 2 * L)          the IF state, the prefix output and
                       + chunk * b * (B + w * L)         the time sum; per step of a chunk
                                                         every layer's reused output buffer
                                                         and the conv workspace (w = 1 on the
                                                         CPU, which works block by block;
                                                         w = 9 on a GPU, which does not)

The estimate is taken times MARGIN (1.1). Layer sizes come from one image through a
throw-away copy of the network whose IF nodes are plain ReLUs (``layer_sizes``): the SNN's
own nodes never run for it.
"""
from __future__ import annotations

import os

import numpy as np

from ..backend import xp_of
from ..fast.engine import DEFAULT_CHUNK
from ..layers import AvgPool2d, Conv2d, ReLU
from ..module import rebuild
from ..neurons import IFNode


# The estimate below times this: measured peaks (tracemalloc, vgg_cpu, both engines, chunks
# 4 and 16, counts or records) lie within 10% of it.
MARGIN = 1.1


class SimulationTooLarge(MemoryError):
    """A simulation would need more memory than there is: the message says how to fit."""


def available_memory(xp=np) -> int | None:
    """Bytes that can still be allocated on ``xp``'s device (None when unknown)."""
    if xp is not np:
        try:                                  # the pool's free blocks can be reused as well
            free, _ = xp.cuda.runtime.memGetInfo()
            pool = xp.get_default_memory_pool()
            return int(free) + int(getattr(pool, "free_bytes", lambda: 0)())
        except Exception:  # noqa: BLE001 - a driver that cannot say: do not refuse on a guess
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def layer_sizes(snn, x):
    """(values per sample of each top-level module's output, of each IF node), from one image
    through a throw-away copy of ``snn.tree`` with a ReLU for every IF node (same shapes)."""
    probe = rebuild(snn.tree, lambda m, path: ReLU() if isinstance(m, IFNode) else m)
    probe.eval()
    relus = [m for _, m in probe.named_modules() if isinstance(m, ReLU)]    # as snn.nodes
    for r in relus:
        r.record = []
    h, flat = x[:1], []
    with np.errstate(over="ignore", invalid="ignore"):      # only shapes matter here
        for m in (probe.flat() if hasattr(probe, "flat") else [probe]):     # as snn.flat
            h = m.forward(h)
            flat.append(int(h[0].size))
    return flat, [int(r.record[0][0].size) for r in relus]


def simulation_bytes(snn, x, T: int, engine: str = "reference", chunk: int | None = None,
                     count: bool = False, record: bool = False):
    """(bytes per image fixed, bytes per image and step of a chunk, steps per chunk)."""
    flat, nodes = layer_sizes(snn, x)
    b = np.dtype(x.dtype).itemsize
    states = b + 4 * (bool(count or record) + bool(record))     # v; int32 counts, first spikes
    S, L = sum(nodes), max(flat + [int(np.prod(x.shape[1:]))])
    if engine != "fast":
        return S * states + 12 * L * b, 0, 1
    Tc = min(T, DEFAULT_CHUNK if chunk is None else chunk)
    w = 1 if xp_of(x) is np else 9
    # an IF node right after a conv or pool writes its spikes over that layer's output
    over = sum(flat[i] for i in range(snn.first + 1, snn.last + 1)
               if isinstance(snn.flat[i], IFNode) and isinstance(snn.flat[i - 1], (Conv2d, AvgPool2d)))
    body = sum(flat[snn.first:snn.last + 1]) - over
    return S * states + 2 * L * b, (body + w * L) * b, Tc


def _gib(n: float) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def check_memory(snn, x, T: int, engine: str = "reference", chunk: int | None = None,
                 count: bool = False, record: bool = False, available=None):
    """Raise SimulationTooLarge when the simulation's estimated memory exceeds what is
    available (``available`` bytes; default: ``available_memory``). Returns the estimate."""
    fixed, per_step, Tc = simulation_bytes(snn, x, T, engine, chunk, count, record)
    N = int(x.shape[0])
    fixed, per_step = fixed * MARGIN, per_step * MARGIN
    need = N * (fixed + Tc * per_step)
    avail = available_memory(xp_of(x)) if available is None else available
    if avail is None or need <= avail:
        return need
    fits_n = int(avail // (fixed + Tc * per_step))
    how = []
    if engine == "fast" and per_step and Tc > 1:
        fits_tc = int((avail / N - fixed) // per_step)
        if fits_tc >= 1:
            how.append(f"a smaller chunk (--chunk {fits_tc} or less; the default, "
                       f"{DEFAULT_CHUNK}, is as fast)")
    if fits_n >= 1:
        how.append(f"a smaller batch (--batch-size {fits_n} or less)")
    if not how:
        fits_n1 = int(avail // (fixed + per_step))
        how.append(f"--chunk 1 and --batch-size {fits_n1} or less" if fits_n1 >= 1 else
                   "a machine with more memory: even one image at --chunk 1 does not fit")
    per = f"{N} images x {Tc} steps per chunk" if engine == "fast" else f"{N} images"
    raise SimulationTooLarge(
        f"this simulation would need about {_gib(need)} of memory ({per}, {engine} engine), "
        f"more than the {_gib(avail)} available: use {' or '.join(how)}")
