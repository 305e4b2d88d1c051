"""Run a converted SNN for T time steps: input coding, the fast engine and its reference.

The fast engine works *layer by layer over a chunk of time steps*. For a feed-forward
network (residual blocks included) layer l at step t depends only on layer l-1 at step t and
on its own state, so a chunk of Tc steps can pass through a layer as one (Tc*N, ...) batch:
one call per layer instead of Tc, while only the IF nodes loop over the Tc steps
(elementwise work). The state carries over between chunks, so memory is bounded by the
chunk, not by T (each module's output buffer is reused from chunk to chunk), and the spikes
are the same as the step-by-step reference (``simulate_reference``), which is the same
engine with chunks of one step. (Bit for bit as long as the BLAS gives a row of a matrix
product the same value whatever the number of rows: OpenBLAS's AVX-512 kernels do for
blocks of >= 64 rows; its AVX2 "Haswell" kernels can differ in the last bit of v.)

Two more exact shortcuts:
- direct coding feeds the same current at every step, so the layers before the first IF
  node run once on the image (N rows) and the first node integrates that constant current;
- the readout (the linear layers after the last IF node, the non-spiking output layer) is
  applied once to the time-average of its input instead of at every step.

Decoded output (what the prediction is the argmax of):
    out = readout( (1/T) * sum_t spikes_last(t) * V_th_last )
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import to_host, xp_of
from .convert import SNN
from .layers import AvgPool2d, Conv2d
from .neurons import IFNode

CODINGS = ("direct", "rate")
_REUSE = (Conv2d, AvgPool2d, IFNode)    # modules whose forward can write into an old output
# Steps per layer pass. The convs block their GEMMs over images themselves, so a longer chunk
# buys no GEMM efficiency, only memory (measured in results/bench.md).
DEFAULT_CHUNK = 4


def check_T(T) -> int:
    """T must be a positive integer number of time steps."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"T must be a positive integer number of time steps, got {T!r}")
    return int(T)


def check_coding(coding: str) -> str:
    if coding not in CODINGS:
        raise ValueError(f"unknown input coding {coding!r}; choose one of {', '.join(CODINGS)}")
    return coding


# --------------------------------------------------------------------------- coding
def rate_encode(x_norm, mean, std, t0: int, Tc: int, seed: int):
    """Bernoulli rate coding of a normalised batch for steps t0+1 .. t0+Tc -> (Tc*N, C, H, W).

    The ANN was trained on normalised inputs (x/255 - mean)/std, which have both signs. A
    spike train cannot be negative, so we code the *raw intensity* p = x/255 in [0, 1]:
    s(t) ~ Bernoulli(p), and feed the first layer the normalised spike (s(t) - mean)/std.
    Its time average tends to (p - mean)/std, the normalised image, so the sign is carried
    by the (affine) normalisation, not by the spikes. Random numbers are drawn on the host
    from a Generator seeded by (seed, t0), so every backend and every chunk size sees the
    same spikes.
    """
    if mean is None or std is None:  # np.asarray(None, float32) is NaN: would run silently
        raise ValueError("rate coding needs the normalisation mean and std of the inputs")
    xp = xp_of(x_norm)
    mean = xp.asarray(np.asarray(mean, np.float32).reshape(1, -1, 1, 1))
    std = xp.asarray(np.asarray(std, np.float32).reshape(1, -1, 1, 1))
    p = xp.clip(x_norm * std + mean, 0.0, 1.0)                       # (N, C, H, W) intensity
    out = []
    for t in range(t0, t0 + Tc):
        u = np.random.default_rng([seed, t]).random(x_norm.shape, dtype=np.float32)
        s = (xp.asarray(u) < p).astype(x_norm.dtype)
        out.append((s - mean) / std)
    return xp.concatenate(out, axis=0)


# --------------------------------------------------------------------------- engine
@dataclass
class SimResult:
    """What a simulation returns. ``output`` (N, K) is on the device; records are host arrays.

    layers[i] (when records were asked for) holds for IF node i:
      spike_count (N, ...), first_spike (N, ...) (1-based step, 0 = never), v_T (N, ...),
      decoded (N, ...) = spike_count * V_th / T (the layer's SNN output, Fig. 7).
    """
    output: object
    T: int
    layers: list = field(default_factory=list)
    spikes: list = field(default_factory=list)    # total spikes per node (count/record runs)
    neurons: list = field(default_factory=list)   # neurons per sample per node

    def firing_rate(self) -> float:
        """Mean spikes per neuron per time step over all IF nodes and samples."""
        n = self.output.shape[0]
        return sum(self.spikes) / max(1, n * self.T * sum(self.neurons))


def _linear_readout(snn: SNN, h):
    for m in snn.flat[snn.last + 1:]:
        h = m.forward(h)
    return h


def simulate(snn: SNN, x, T: int, coding: str = "direct", chunk: int = DEFAULT_CHUNK,
             record: bool = False, keep_v: bool = False, count: bool = False,
             mean=None, std=None, seed: int = 0):
    """Run ``snn`` for T steps on the normalised batch ``x`` (N, C, H, W); return SimResult.

    ``chunk`` steps go through each layer at once (1 = the step-by-step reference).
    ``record`` keeps per-layer spike counts, first-spike times, v(T) and decoded outputs;
    ``keep_v`` keeps only v(T) (what Alg. 2 needs); ``count`` only the total number of
    spikes per node (``SimResult.spikes``, for firing rates). Rate coding needs the normalisation
    ``mean``/``std`` to recover intensities.
    """
    T = check_T(T)
    check_coding(coding)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if coding == "rate" and (mean is None or std is None):
        raise ValueError("rate coding needs the normalisation mean and std of the inputs")
    xp = xp_of(x)
    first_mod = snn.flat[0]
    in_ch = getattr(first_mod, "in_channels", None)
    if x.ndim != 4 or (in_ch is not None and x.shape[1] != in_ch):
        raise ValueError(f"expected a normalised batch (N, {in_ch or 'C'}, H, W), got {tuple(x.shape)}")
    N = x.shape[0]
    for node in snn.nodes:
        node.reset(N, record=record, count=count)
    prefix = snn.flat[:snn.first]
    body = snn.flat[snn.first:snn.last + 1]
    # Direct coding: the prefix (linear layers before the first IF node) sees the same input
    # at every step, so it runs once; the first node then integrates a constant current.
    const_ok = coding == "direct" and isinstance(snn.flat[snn.first], IFNode)
    if const_ok:
        c0 = x
        for m in prefix:
            c0 = m.forward(c0)
    acc, bufs = None, {}
    for t0 in range(0, T, chunk):
        Tc = min(chunk, T - t0)
        for node in snn.nodes:
            node.chunk = Tc
        if const_ok:
            h = c0
        else:
            if coding == "direct":
                h = xp.broadcast_to(x[None], (Tc,) + x.shape).reshape((Tc * N,) + x.shape[1:])
            else:
                h = rate_encode(x, mean, std, t0, Tc, seed)
            for m in prefix:
                h = m.forward(h)
        for i, m in enumerate(body):
            if isinstance(m, _REUSE):
                # overwrite this module's output of the previous chunk, long consumed: no
                # fresh (page-faulting) allocation of a large buffer per chunk
                h = bufs[i] = m.forward(h, out=bufs.get(i))
            else:
                h = m.forward(h)
        s = h.reshape((Tc, N) + h.shape[1:]).sum(axis=0)     # time-sum of the last layer's output
        acc = s if acc is None else acc + s
    out = _linear_readout(snn, acc / T)
    res = SimResult(output=out, T=T)
    if count or record:
        # sync point: one number per node
        res.spikes = [int(to_host(n.spike_count.sum())) for n in snn.nodes]
        res.neurons = [int(n.v[0].size) for n in snn.nodes]
    if record or keep_v:
        for node in snn.nodes:
            rec = {"v_T": to_host(node.v)}                  # sync point: records to the host
            if record:
                count = to_host(node.spike_count)
                rec["spike_count"] = count
                rec["first_spike"] = to_host(node.first_spike)
                rec["decoded"] = count * to_host(node.v_th_full(xp)) / T
            res.layers.append(rec)
    return res


def simulate_reference(snn: SNN, x, T: int, coding: str = "direct", **kw):
    """The step-by-step reference: every layer advances one time step at a time.

    Same IF dynamics, no chunking, no constant-current or readout shortcut: at every step
    the full network runs on that step's input and the readout integrates its input.
    """
    T = check_T(T)
    check_coding(coding)
    xp = xp_of(x)
    N = x.shape[0]
    record = kw.get("record", False)
    for node in snn.nodes:
        node.reset(N, record=record)
        node.chunk = 1
    mean, std, seed = kw.get("mean"), kw.get("std"), kw.get("seed", 0)
    total = None
    for t in range(T):
        h = x if coding == "direct" else rate_encode(x, mean, std, t, 1, seed)
        for m in snn.flat:
            h = m.forward(h)
        total = h if total is None else total + h               # the output layer integrates
    res = SimResult(output=total / T, T=T)
    if record:
        for node in snn.nodes:
            count = to_host(node.spike_count)
            res.layers.append({"v_T": to_host(node.v), "spike_count": count,
                               "first_spike": to_host(node.first_spike),
                               "decoded": count * to_host(node.v_th_full(xp)) / T})
    return res


def predict(snn: SNN, x, T: int, **kw):
    """Class predictions (host int array) of the SNN after T steps."""
    return to_host(simulate(snn, x, T, **kw).output.argmax(axis=1))
