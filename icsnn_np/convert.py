"""ANN -> SNN conversion (Sec. 3.1): every ReLU becomes an IF node; thresholds by balancing.

``convert(model)`` returns an ``SNN`` that *shares* the ANN's weight arrays: the module tree
is rebuilt with each ``ReLU`` replaced by an ``IFNode`` and every other layer reused as is,
so residual blocks convert like plain stacks.

Threshold balancing (Rueckauer et al. 2017, "robust normalisation"; Sec. 3.1 and 4.1.3):
V_th^l = p-quantile of layer l's ReLU outputs over calibration images of the training set.
"""
from __future__ import annotations

import numpy as np

from .backend import to_device, to_host
from .checks import check_batch, check_finite, check_quantile, check_threshold
from .layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from .models import BasicBlock
from .module import Module, Sequential, rebuild
from .neurons import IFNode

# A quantile over more values than this is taken on a seeded uniform subsample of them.
MAX_QUANTILE_SAMPLES = 1 << 24


class SNN:
    """A converted network: the rebuilt module tree and its IF nodes in execution order.

    ``flat``    the top-level modules in execution order (residual blocks kept whole)
    ``nodes``   every IFNode, in the order of the ANN's ReLUs
    ``first``, ``last``  indices in ``flat`` of the first and last module holding an IF node;
                the modules after ``last`` are the *readout*, which must be linear: the output
                layer integrates without spiking
    ``blocks``  per residual block, the indices in ``nodes`` of its IF nodes (Sec. 4.3)
    ``ann``     the ANN it was converted from, whose weights it shares
    """

    def __init__(self, tree, nodes, blocks=(), ann=None):
        self.tree, self.nodes, self.ann = tree, nodes, ann
        self.blocks = [list(b) for b in blocks]
        self.flat = list(tree.flat()) if isinstance(tree, Sequential) else [tree]
        holds = [i for i, m in enumerate(self.flat)
                 if any(isinstance(c, IFNode) for _, c in m.named_modules())]
        if not holds:
            raise ValueError("the model has no ReLU: nothing to convert into spiking neurons")
        self.first, self.last = holds[0], holds[-1]
        for m in self.flat[self.last + 1:]:
            if not isinstance(m, (Linear, Flatten, AvgPool2d, Conv2d)):
                raise ValueError(f"the readout after the last spiking layer must be linear, "
                                 f"found {type(m).__name__}")

    def set_v0(self, v0s):
        """Set every node's initial potential v(0) (a list aligned with ``nodes``)."""
        if len(v0s) != len(self.nodes):
            raise ValueError(f"expected {len(self.nodes)} initial potentials, got {len(v0s)}")
        for n, v0 in zip(self.nodes, v0s):       # a NaN v(0) never fires: a silent constant
            check_finite(v0, f"{n.name or 'IF node'}: v(0)")
        for n, v0 in zip(self.nodes, v0s):
            n.v0 = v0

    def get_v0(self):
        return [n.v0 for n in self.nodes]

    def block_first(self):
        """Per node: False for the IF nodes of a residual block after its first one (the paper
        applies v(0) "only to the first layer in the block", Sec. 4.3)."""
        keep = [True] * len(self.nodes)
        for b in self.blocks:
            for i in b[1:]:
                keep[i] = False
        return keep


def convert(model: Module) -> SNN:
    """Rebuild ``model`` with each ReLU replaced by an IFNode (weights shared, not copied).

    Each node remembers ``source``, the last Conv2d/Linear before it in its container: the
    weight layer that drives it, which Alg. 1 reads.
    """
    for name, m, k in model.named_parameters():
        check_finite(m.params[k], f"weight tensor {name}")
    model.eval()
    tree = rebuild(model, lambda m, path: IFNode(name=path) if isinstance(m, ReLU) else m)
    nodes = [m for _, m in tree.named_modules() if isinstance(m, IFNode)]
    for _, container in tree.named_modules():
        last_weight = None
        for child in container.children.values():
            if isinstance(child, IFNode):
                child.source = last_weight
            elif isinstance(child, (Conv2d, Linear)):
                last_weight = child
    index = {id(n): i for i, n in enumerate(nodes)}
    blocks = [[index[id(n)] for _, n in b.named_modules() if isinstance(n, IFNode)]
              for _, b in tree.named_modules() if isinstance(b, BasicBlock)]
    return SNN(tree, nodes, blocks, ann=model)


def relu_outputs(model: Module, x_batches):
    """Every ReLU's outputs of the ANN (eval mode) over the normalised ``x_batches``: a list
    over ReLUs of host arrays (N_total, ...)."""
    relus = [m for _, m in model.named_modules() if isinstance(m, ReLU)]
    model.eval()
    outs = [[] for _ in relus]
    try:
        for i, xb in enumerate(x_batches):
            check_batch(xb, f"calibration batch {i}")
            for r in relus:
                r.record = []
            model.forward(xb)
            for o, r in zip(outs, relus):
                o.append(to_host(r.record[0]))   # sync point: activations go to the host
    finally:
        for r in relus:
            r.record = None
    if relus and not outs[0]:
        raise ValueError("threshold balancing needs at least one batch of calibration images")
    return [np.concatenate(o) for o in outs]


def robust_quantile(values: np.ndarray, p: float, axis=None, seed: int = 0, positive=False):
    """p-quantile of ``values`` (host), exact up to MAX_QUANTILE_SAMPLES values, beyond that
    on a seeded uniform subsample. ``axis=1`` on (C, M) gives one per row; ``positive``: of
    each row's entries > 0 only (NaN for a row without any), as ``np.quantile`` would."""
    rng = np.random.default_rng(seed)
    if axis is None:
        flat = values.reshape(-1)
        if flat.size > MAX_QUANTILE_SAMPLES:
            flat = flat[rng.choice(flat.size, MAX_QUANTILE_SAMPLES, replace=False)]
        return float(np.quantile(flat, p))
    if values.shape[1] > MAX_QUANTILE_SAMPLES // max(1, values.shape[0]):
        k = MAX_QUANTILE_SAMPLES // values.shape[0]
        values = values[:, rng.choice(values.shape[1], k, replace=False)]
    if not positive:
        return np.quantile(values, p, axis=1)
    s = np.sort(values, axis=1)                     # (C, M): each row's positives at its end
    k = (s > 0).sum(axis=1)
    h = (s.shape[1] - k) + p * np.maximum(k - 1, 0)  # np.quantile's linear position among them
    lo = np.minimum(np.floor(h), s.shape[1] - 1).astype(np.int64)
    hi = np.minimum(lo + 1, s.shape[1] - 1)
    rows = np.arange(len(s))
    q = s[rows, lo] + (h - lo) * (s[rows, hi] - s[rows, lo])
    return np.where(k > 0, q, np.nan)


class ZeroQuantile(ValueError):
    """The p-quantile is 0 in layers ``zeros`` ({name: share of outputs that are 0})."""

    def __init__(self, p: float, zeros: dict):
        self.zeros, shares = zeros, ", ".join(f"{n}: {100 * z:.2f} %" for n, z in zeros.items())
        super().__init__(f"threshold balancing: the p-quantile is 0 at p = {p:g} in {shares} "
                         f"(outputs that are 0 on the calibration images); use a p above "
                         f"{max(zeros.values()):.4f}")


def quantile_threshold(a, p: float, name: str, channelwise: bool = False):
    """V_th from one layer's ReLU outputs ``a`` (N, C, ...) at quantile p.

    Layer-wise (the paper): the p-quantile of all its outputs, zeros included; where that is
    0 (p below the layer's share of zeros) the run stops, naming the smallest p that works.
    Channel-wise (ours): the p-quantile of each channel's *positive* outputs (SNN-Toolbox's
    rule, Rueckauer et al. 2017), since many channels are 0 on over 99.9 % of the images;
    a channel never positive on the calibration images takes the layer's threshold.
    Both are non-decreasing in p.
    """
    layer = robust_quantile(a, p)
    if layer <= 0:
        raise ZeroQuantile(p, {name: float(np.mean(a == 0))})
    if not channelwise:
        return np.float32(layer)
    per_c = robust_quantile(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1), p, axis=1, positive=True)
    th = np.where(np.isnan(per_c), layer, per_c)                               # (C,)
    return th.astype(np.float32).reshape((-1,) + (1,) * (a.ndim - 2))


def balance_thresholds(snn: SNN, model: Module, x_batches, p: float = 0.99,
                       channelwise: bool = False, xp=np, per_block: bool = False):
    """Set each IF node's V_th by ``quantile_threshold`` of its ReLU's outputs over
    ``x_batches``; returns the thresholds. ``per_block=True`` is the paper's ResNet treatment
    (Sec. 4.3): the nodes of a residual block share one quantile over all their outputs."""
    p = check_quantile(p)
    acts = relu_outputs(model, x_batches)
    for node, a in zip(snn.nodes, acts):       # a NaN quantile would be a silent threshold
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{node.name}: the calibration activations contain NaN or inf "
                             f"(NaN/inf weights, or values beyond float32's range)")
    if per_block:
        for b in snn.blocks:
            pooled = np.concatenate([acts[i] for i in b])     # (len(b) * N, C, H, W)
            for i in b:
                acts[i] = pooled
    ths, zeros = [], {}
    for node, a in zip(snn.nodes, acts):      # every layer first: the error names the p for all
        try:
            ths.append(quantile_threshold(a, p, node.name, channelwise))
        except ZeroQuantile as e:
            zeros.update(e.zeros)
    if zeros:
        raise ZeroQuantile(p, zeros)
    for node, th in zip(snn.nodes, ths):
        node.v_th = check_threshold(to_device(th, xp) if np.ndim(th) else th, node.name)
    return [n.v_th for n in snn.nodes]
