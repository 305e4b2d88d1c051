"""Spikes, synaptic operations and an energy estimate for a converted SNN, against its ANN.

    d = stats_for_demo(model, snn, x, T=32)      # JSON-ready dict, per image
    print(format_stats(d))

Definitions (all counts per image, over the T steps):

- **spikes** of IF layer l: sum of its neurons' spike counts (``simulate(record=True)``);
  **firing rate** = spikes / (neurons * T).
- **fan-out** of a neuron: the number of synapses its spike drives, i.e. of (target neuron,
  weight) pairs in the next weight layer(s) it feeds, counted exactly: border neurons of a
  padded conv drive fewer taps, neurons that a pooling window drops drive none, a spike
  through a 2x2 average pool drives the taps of the pooled position. An identity shortcut
  of a residual block is one synapse (the spike is added into the next block's neuron).
  The counts come from a backward pass of ones through an *indicator copy* of the network
  (every weight 1, average pools summing, every ReLU/IF node passing ones back upstream),
  i.e. each layer's transpose applied to ones, stopped at the next spiking layer.
- **SOPs** (synaptic operations, accumulates) of layer l = sum over its neurons of
  spikes * fan-out. A spike carries V_th^l, which is folded into the next weights, so each
  synaptic event is one addition (AC).
- **ANN MACs** of layer l: the multiply-accumulates the ANN spends on the weight layer(s)
  that layer l feeds, counted exactly in the same way (the same backward pass, with average
  pools averaging: the ANN pools first and convolves the pooled map, so a neuron before a
  2x2 pool has a quarter of the MACs of the synapses its spike drives). Padded taps are not
  counted; ``ann_macs_nominal`` gives the usual O*Ho*Wo*C*k^2 count (thop/ptflops style,
  padding included) for comparison with papers. An identity shortcut is an addition in the
  ANN (``ann_adds``); the ANN's pooling additions are not counted.
- **Input layer.** Direct coding feeds the analog image, so the first weight layer does
  MACs, not ACs: the image is a constant current, computed once (as ``simulate`` does;
  ``input_per_step=True`` charges it at every step, as hardware re-reading the image
  would). Rate coding feeds Bernoulli spikes: input spikes * fan-out SOPs (the constant
  offset of the normalisation is a bias and is not counted).
- **Energy** (an estimate, stated assumptions): E_AC = 0.9 pJ per accumulate and E_MAC =
  4.6 pJ per multiply-accumulate, 32-bit floating point in 45 nm CMOS (M. Horowitz,
  "Computing's energy problem (and what we can do about it)", ISSCC 2014, pp. 10-14:
  fp32 add 0.9 pJ, fp32 mult 3.7 pJ). Memory access, the neurons' own updates (integrate,
  compare, reset) and the readout are not counted, on either side.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from ..backend import to_host
from ..io.batchnorm import BatchNorm2d
from ..io.preprocess import batched
from ..layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from ..models import BasicBlock
from ..module import Module
from ..neurons import IFNode
from ..simulate import rate_encode
from .inputs import check_images

E_AC_PJ = 0.9       # pJ per 32-bit float add, 45 nm (Horowitz, ISSCC 2014)
E_MAC_PJ = 4.6      # pJ per 32-bit float multiply (3.7) + add (0.9), 45 nm (Horowitz, ISSCC 2014)
ENERGY_SOURCE = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
                 "ISSCC 2014, pp. 10-14: 45 nm, fp32 add 0.9 pJ, fp32 mult 3.7 pJ")


# --------------------------------------------------------------------------- fan-out
class _Probe(Module):
    """Stands in for a ReLU / IF node in the indicator copy.

    forward passes x on; backward keeps the incoming gradient (the fan-out of each of its
    neurons) and sends ones upstream (each of its input neurons is one synapse target).
    """

    def __init__(self, ctx):
        super().__init__()
        self.ctx, self.fanout, self.out = ctx, None, None

    def forward(self, x):
        self.out = x
        self.ctx["last"] = self
        return x

    def backward(self, grad):
        self.fanout = grad[0].copy()
        return np.ones_like(grad)


class _SumPool(AvgPool2d):
    """Average pool whose transpose counts connections (1 per window member, not 1/k^2)."""

    def backward(self, grad):
        return super().backward(grad) * float(self.kernel_size ** 2)


class _Identity(Module):
    """BatchNorm in the indicator copy: per-channel scaling, connectivity of the identity."""

    def forward(self, x):
        return x

    def backward(self, grad):
        return grad


def _indicator(m, ctx):
    """An indicator copy of ``m`` on the host in float64 (see the module docstring); its
    average pools sum (SNN synapses) unless ``ctx["avg"]`` (ANN MACs)."""
    if isinstance(m, (ReLU, IFNode)):
        p = _Probe(ctx)
        ctx["probes"].append(p)
        return p
    if isinstance(m, BatchNorm2d):
        return _Identity()
    if isinstance(m, AvgPool2d):
        return (AvgPool2d if ctx["avg"] else _SumPool)(m.kernel_size, m.stride)
    if isinstance(m, Flatten):
        return Flatten()
    if isinstance(m, (Conv2d, Linear)):
        c = copy.copy(m)
        c.params = {k: (np.ones if k == "weight" else np.zeros)(v.shape) for k, v in m.params.items()}
        c.grads = {k: np.zeros(v.shape) for k, v in m.params.items()}
        ctx["weights"].append(c)
        if isinstance(m, Conv2d):                          # keep the output size: nominal MACs
            def forward(x, _c=c, _fwd=c.forward):
                y = _fwd(x)
                _c.out_hw = y.shape[2:]
                return y
            c.forward = forward
        return c
    if not m.children:
        raise ValueError(f"stats: no synapse count for layer type {type(m).__name__}")
    c = copy.copy(m)
    c.children = OrderedDict((n, _indicator(ch, ctx)) for n, ch in m.children.items())
    if isinstance(m, BasicBlock) and "shortcut" not in m.children:
        def forward(x, _block=c, _fwd=c.forward):
            last = ctx["last"]
            if last is not None and x is last.out:      # the spikes of `last` enter directly
                ctx["identity"][id(last)] = ctx["identity"].get(id(last), 0) + int(x[0].size)
            return _fwd(x)
        c.forward = forward
    return c


def fanout_maps(model, input_shape, ann: bool = False):
    """Exact fan-outs: (input map (C, H, W), [map per ReLU/IF node], identity synapses per
    node, nominal MACs per weight layer).

    ``input_shape`` is one sample's (C, H, W). The maps are float64 arrays of integers
    (``ann=True``: the ANN's MACs per neuron instead, which sum to the layer's MACs).
    """
    ctx = {"probes": [], "weights": [], "identity": {}, "last": None, "avg": ann}
    probe = _indicator(model, ctx).train()               # train mode: layers keep their caches
    out = probe.forward(np.zeros((1,) + tuple(input_shape)))
    gin = probe.backward(np.ones(out.shape))
    nominal = []
    for w in ctx["weights"]:
        if isinstance(w, Conv2d):
            Ho, Wo = w.out_hw
            nominal.append(w.out_channels * Ho * Wo * w.in_channels * w.kernel_size ** 2)
        else:
            nominal.append(w.in_features * w.out_features)
    ident = [ctx["identity"].get(id(p), 0) for p in ctx["probes"]]
    return gin[0], [p.fanout for p in ctx["probes"]], ident, nominal


# --------------------------------------------------------------------------- statistics
def spike_totals(snn, x, T, batch_size=100, sim=None, **coding):
    """Per IF node, the spike count of each neuron summed over the images: host int64 arrays.
    ``sim`` (the core ``simulate``'s signature; default ``snn.run``) runs the SNN."""
    totals = None
    for xb in batched(x, batch_size):
        res = sim(snn, xb, T, record=True, **coding) if sim else snn.run(xb, T, record=True, **coding)
        counts = [r["spike_count"].sum(axis=0, dtype=np.int64) for r in res.layers]
        totals = counts if totals is None else [a + b for a, b in zip(totals, counts)]
    return totals


def input_spike_totals(x, T, mean, std, seed=0, batch_size=100):
    """Rate coding: spikes of each input pixel summed over images and steps (the draws
    ``simulate`` makes with the same seed, recovered from ``rate_encode``)."""
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    total = np.zeros(x.shape[1:], np.int64)
    for xb in batched(x, batch_size):
        for t in range(T):
            enc = to_host(rate_encode(xb, mean, std, t, seed))      # sync point
            total += np.rint(enc * s + m).astype(np.int64).sum(axis=0)
    return total


def spike_stats(model, snn, x, T, coding="direct", input_per_step=False, e_ac_pj=E_AC_PJ,
                e_mac_pj=E_MAC_PJ, batch_size=100, sim=None, **kw):
    """Spikes, firing rates, SOPs and energy of ``snn`` on the normalised batch ``x``, against
    ``model`` (the ANN it was converted from), per image; a JSON-ready dict.

    The SNN runs as it stands (thresholds and v(0) as set). ``kw`` (mean, std,
    seed) goes to the simulation, ``sim`` (default ``snn.run``); rate coding needs ``mean``
    and ``std``.
    """
    check_images(model, x, "the image batch of spike_stats")     # size and channels, said plainly
    n = int(x.shape[0])
    fan_in, fans, ident, nominal = fanout_maps(model, x.shape[1:])
    _, macs, _, _ = fanout_maps(model, x.shape[1:], ann=True)
    counts = spike_totals(snn, x, T, batch_size=batch_size, sim=sim, coding=coding, **kw)
    if len(fans) != len(counts):
        raise ValueError(f"the ANN has {len(fans)} ReLUs but the SNN {len(counts)} IF nodes")
    # input row
    syn_in = float(fan_in.sum())
    row_in = {"name": "input", "kind": coding, "neurons": int(fan_in.size),
              "fanout_mean": syn_in / fan_in.size, "ann_macs": syn_in, "ann_adds": 0.0}
    if coding == "direct":
        row_in.update(spikes=None, firing_rate=None, sops=0.0,
                      snn_macs=syn_in * (T if input_per_step else 1))
    else:
        s_in = input_spike_totals(x, T, kw["mean"], kw["std"], kw.get("seed", 0), batch_size)
        row_in.update(spikes=float(s_in.sum()) / n, firing_rate=float(s_in.sum()) / (n * T * s_in.size),
                      sops=float((s_in * fan_in).sum()) / n, snn_macs=0.0)
    rows = [row_in]
    for node, fan, mac, idn, cnt in zip(snn.nodes, fans, macs, ident, counts):
        if tuple(cnt.shape) != tuple(fan.shape):
            raise ValueError(f"{node.name}: spike counts {tuple(cnt.shape)} do not match the ANN "
                             f"layer's shape {tuple(fan.shape)}")
        syn = float(fan.sum())
        spikes = float(cnt.sum())
        rows.append({"name": node.name, "kind": "IF", "neurons": int(fan.size),
                     "spikes": spikes / n, "firing_rate": spikes / (n * T * fan.size),
                     "fanout_mean": syn / fan.size, "sops": float((cnt * fan).sum()) / n,
                     "snn_macs": 0.0, "ann_macs": float(mac.sum()) - idn, "ann_adds": float(idn)})
    tot = {k: sum(r[k] for r in rows) for k in ("sops", "snn_macs", "ann_macs", "ann_adds")}
    if_rows = rows[1:]
    tot["spikes"] = sum(r["spikes"] for r in if_rows)
    tot["neurons"] = sum(r["neurons"] for r in if_rows)
    tot["firing_rate"] = tot["spikes"] / max(1, tot["neurons"] * T)
    tot["ann_macs_nominal"] = float(sum(nominal))
    tot["snn_energy_uj"] = (tot["sops"] * e_ac_pj + tot["snn_macs"] * e_mac_pj) * 1e-6
    tot["ann_energy_uj"] = (tot["ann_macs"] * e_mac_pj + tot["ann_adds"] * e_ac_pj) * 1e-6
    tot["energy_ratio"] = tot["ann_energy_uj"] / tot["snn_energy_uj"] if tot["snn_energy_uj"] else None
    return {"T": int(T), "n_images": n, "coding": coding, "input_per_step": bool(input_per_step),
            "per": "image",
            "assumptions": {"e_ac_pj": e_ac_pj, "e_mac_pj": e_mac_pj, "source": ENERGY_SOURCE,
                            "not_counted": "memory access, neuron updates, the readout"},
            "layers": rows, "total": tot}


def stats_for_demo(model, snn, x, T, **kw) -> dict:
    """The demo's ``--stats``: ``spike_stats`` with the demo's simulation settings."""
    return spike_stats(model, snn, x, T, **kw)


def _num(v, width, fmt=None):
    if v is None:
        return f"{'-':>{width}s}"
    if fmt:
        return f"{v:>{width}{fmt}}"
    v = float(v)
    if v == 0:
        return f"{'0':>{width}s}"
    return f"{v:>{width}.4g}" if abs(v) < 1e5 else f"{v:>{width}.3e}"


def format_stats(d: dict) -> str:
    """A plain-text table of ``spike_stats``'s dict (per image)."""
    w = max(12, max(len(r["name"]) for r in d["layers"]))
    head = (f"{'layer':{w}s} {'neurons':>9s} {'spikes':>10s} {'rate':>7s} {'fan-out':>8s} "
            f"{'SOPs':>10s} {'ANN MACs':>10s} {'SOP/MAC':>8s}")
    lines = [f"Spikes and synaptic operations per image (T={d['T']}, {d['n_images']} images, "
             f"{d['coding']} coding)", head, "-" * len(head)]
    for r in d["layers"]:
        ann = r["ann_macs"] + r["ann_adds"]
        ratio = r["sops"] / ann if ann else None
        name = r["name"]
        if r["name"] == "input" and d["coding"] == "direct":
            name, ratio = "input (MACs)", None
        lines.append(f"{name:{w}s} {r['neurons']:>9d} {_num(r['spikes'], 10)} "
                     f"{_num(r['firing_rate'], 7, '.4f')} {r['fanout_mean']:>8.1f} "
                     f"{_num(r['sops'], 10)} {_num(r['ann_macs'] + r['ann_adds'], 10)} "
                     f"{_num(ratio, 8, '.3f')}")
    t = d["total"]
    ann = t["ann_macs"] + t["ann_adds"]
    lines.append("-" * len(head))
    lines.append(f"{'total':{w}s} {t['neurons']:>9d} {_num(t['spikes'], 10)} "
                 f"{t['firing_rate']:>7.4f} {'':>8s} {_num(t['sops'], 10)} "
                 f"{_num(ann, 10)} {_num(t['sops'] / ann if ann else None, 8, '.3f')}")
    a, g = d["assumptions"], (lambda v: _num(v, 0).strip())
    if t["snn_macs"]:
        lines.append(f"SNN first layer: analog input, {g(t['snn_macs'])} MACs "
                     f"({'every step' if d['input_per_step'] else 'once'})")
    lines.append(f"ANN: {g(t['ann_macs'])} MACs (padded taps excluded; {g(t['ann_macs_nominal'])} "
                 f"with them) + {g(t['ann_adds'])} shortcut adds")
    ratio = "n/a" if t["energy_ratio"] is None else f"{t['energy_ratio']:.2f}x"
    lines.append(f"energy: SNN {t['snn_energy_uj']:.4g} uJ = SOPs x {a['e_ac_pj']} pJ + MACs x "
                 f"{a['e_mac_pj']} pJ; ANN {t['ann_energy_uj']:.4g} uJ; ANN/SNN = {ratio}")
    lines.append("        (fp32 op energies at 45 nm, Horowitz ISSCC 2014; memory access not counted)")
    return "\n".join(lines)
