"""The fast SNN engine: the network layer by layer over chunks of time steps.

For a feed-forward network (residual blocks included), layer l at step t depends only on
layer l-1 at step t and on its own state, so a chunk of Tc steps can pass through a layer as
one (Tc*N, ...) batch: one call per layer instead of Tc, while only the IF nodes loop over
the Tc steps (elementwise work, neurons.py). The state carries over between chunks, so
memory is bounded by the chunk, not by T (each layer's output buffer is reused from chunk
to chunk), and the spikes are those of the step-by-step simulation (``icsnn_np.simulate``).

Two more exact shortcuts:
- direct coding feeds the same current at every step, so the layers before the first IF
  node run once on the image (N rows) and the first node integrates that constant current;
- the readout (the linear layers after the last IF node, the non-spiking output layer) is
  applied once to the time-average of its input instead of at every step (linearity).
And one that saves memory traffic: an IF node writes its spikes over its current (the
output buffer of the layer before, which nothing else reads), so a chunk's largest arrays
are streamed through the cache once less (about 7 % of a vgg_cpu simulation's time on a
2-core AMD EPYC, measured alternately in one process).

Bit for bit equal to the step-by-step teaching simulation in float64 (tests/test_fast.py);
in float32 Winograd's rounding (~2e-6 of a layer's output) can move a potential that sits
that close to its threshold to the other side.
"""
from __future__ import annotations

from ..backend import xp_of
from ..convert import SNN
from ..simulate import collect, rate_encode
from .conv import FastConv2d
from .layers import FastAvgPool2d, accelerate
from .neurons import FastIFNode
from .threads import hold_blas

# Steps per layer pass. The convs block their GEMMs over images themselves, so a longer chunk
# buys no GEMM efficiency, only memory (measured in results/bench.md).
DEFAULT_CHUNK = 4
_REUSE = (FastConv2d, FastAvgPool2d, FastIFNode)   # forward(h, out=...) overwrites an old output


def fast_snn(snn: SNN, algo: str = "auto") -> SNN:
    """The SNN with its layers and IF nodes replaced by their fast twins (weights shared)."""
    tree = accelerate(snn.tree, algo)
    nodes = [m for _, m in tree.named_modules() if isinstance(m, FastIFNode)]
    return SNN(tree, nodes, snn.blocks, snn.ann)


def simulate_fast(snn: SNN, x, T: int, coding: str = "direct", mean=None, std=None,
                  seed: int = 0, count: bool = False, record: bool = False,
                  keep_v: bool = False, chunk: int | None = None, algo: str = "auto",
                  progress=None):
    """``icsnn_np.simulate.simulate`` (same arguments, same SimResult), by chunks of
    ``chunk`` steps; ``algo="im2col"`` keeps Winograd out of the convs; ``progress(n)`` is
    called after every chunk with the image-steps it ran. The arguments are checked by the
    caller (``runs.engine.Engine``, or ``simulate.check_input``)."""
    chunk = DEFAULT_CHUNK if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    fast = fast_snn(snn, algo)
    N = x.shape[0]
    for node in fast.nodes:
        node.reset(N, count=count, record=record)
    prefix = fast.flat[:fast.first]
    body = fast.flat[fast.first:fast.last + 1]
    # Direct coding: the prefix (linear layers before the first IF node) sees the same input
    # at every step, so it runs once; the first node then integrates a constant current.
    constant = coding == "direct" and isinstance(fast.flat[fast.first], FastIFNode)
    with hold_blas():
        if constant:
            c0 = x
            for m in prefix:
                c0 = m.forward(c0)
        acc, bufs = None, {}
        for s0 in range(0, T, chunk):
            Tc = min(chunk, T - s0)
            for node in fast.nodes:
                node.begin_chunk(Tc)
            if constant:
                h = c0
            else:
                if coding == "direct":
                    h = x[None].repeat(Tc, axis=0).reshape((Tc * N,) + x.shape[1:])
                else:
                    h = xp_of(x).concatenate([rate_encode(x, mean, std, s0 + k, seed)
                                              for k in range(Tc)])     # (Tc*N, C, H, W)
                for m in prefix:
                    h = m.forward(h)
            for i, m in enumerate(body):
                if isinstance(m, FastIFNode) and i > 0 and h is bufs.get(i - 1):
                    # the current is the layer before's reused output, read by this node only:
                    # the spikes overwrite it step by step (one buffer less to stream)
                    h = m.forward(h, out=h)
                elif isinstance(m, _REUSE):
                    # overwrite this module's output of the previous chunk, long consumed: no
                    # fresh (page-faulting) allocation of a large buffer per chunk
                    h = bufs[i] = m.forward(h, out=bufs.get(i))
                else:
                    h = m.forward(h)
            s = h.reshape((Tc, N) + h.shape[1:]).sum(axis=0)  # time-sum of the last layer's output
            acc = s if acc is None else acc + s
            if progress is not None:
                progress(N * Tc)
        out = acc / T
        for m in fast.flat[fast.last + 1:]:                  # the readout, once, on the average
            out = m.forward(out)
    return collect(fast.nodes, out, T, count, record, keep_v)
