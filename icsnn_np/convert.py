"""ANN -> SNN conversion: every ReLU becomes an IF node; thresholds by balancing.

``convert(model)`` returns an ``SNN`` that *shares* the ANN's weight arrays (no copies):
the module tree is rebuilt with each ``ReLU`` replaced by an ``IFNode`` and every other
layer reused as is, so residual blocks convert like plain stacks.

Threshold balancing (Rueckauer et al. 2017, "robust normalisation"; paper Sec. 3.1 and
4.1.3): V_th^l = p-quantile of layer l's ReLU outputs over a calibration subset of the
training set, per layer (the paper) or per channel (an option).
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from .backend import to_device, to_host
from .layers import AvgPool2d, BasicBlock, Conv2d, Flatten, Linear, Module, ReLU, Sequential
from .neurons import IFNode

# A quantile over more values than this is taken on a seeded uniform subsample of them.
MAX_QUANTILE_SAMPLES = 1 << 24


class SNN:
    """A converted network: the rebuilt module tree and its IF nodes in execution order.

    ``flat``      the top-level modules in execution order (blocks kept whole)
    ``nodes``     every IFNode, in the order of the ANN's ReLUs
    ``first``     index in ``flat`` of the first module that holds an IF node
    ``last``      index in ``flat`` of the last module that holds an IF node; the modules
                  after it form the *readout*, which must be linear (Linear, Flatten,
                  AvgPool2d, Conv2d): the output layer integrates without spiking, and the
                  prediction is the readout applied to the time-average of its input.
    ``blocks``    per residual block, the indices in ``nodes`` of its IF nodes (relu1, relu2),
                  for the paper's block treatment (DESIGN.md point 5)
    """

    def __init__(self, tree, nodes, blocks=()):
        self.tree = tree
        self.nodes = nodes
        self.blocks = [list(b) for b in blocks]
        self.flat = list(tree.flat()) if isinstance(tree, Sequential) else [tree]
        holds = [i for i, m in enumerate(self.flat) if _contains_node(m)]
        if not holds:
            raise ValueError("the model has no ReLU: nothing to convert into spiking neurons")
        self.first, self.last = holds[0], holds[-1]
        for m in self.flat[self.last + 1:]:
            if not isinstance(m, (Linear, Flatten, AvgPool2d, Conv2d)):
                raise ValueError(f"the readout after the last spiking layer must be linear, "
                                 f"found {type(m).__name__}")

    @property
    def v_th(self):
        return [n.v_th for n in self.nodes]

    def set_v0(self, v0s):
        """Set every node's initial potential v(0) (a list aligned with ``nodes``)."""
        if len(v0s) != len(self.nodes):
            raise ValueError(f"expected {len(self.nodes)} initial potentials, got {len(v0s)}")
        for n, v0 in zip(self.nodes, v0s):
            n.v0 = v0

    def get_v0(self):
        return [n.v0 for n in self.nodes]

    def block_first(self):
        """Per node: False for the IF nodes of a residual block after its first one.

        The paper (Sec. 4.1.3) applies v(0) "only to the first layer in the block"; with
        ``v0_scope="block-first"`` the other nodes of a block keep v(0) = 0.
        """
        keep = [True] * len(self.nodes)
        for b in self.blocks:
            for i in b[1:]:
                keep[i] = False
        return keep


def _contains_node(m) -> bool:
    if isinstance(m, IFNode):
        return True
    return any(_contains_node(c) for c in m.children.values())


def convert(model: Module) -> SNN:
    """Rebuild ``model`` with each ReLU replaced by an IFNode (weights shared, not copied).

    Each node remembers ``source``, the weight layer that drives it (the last Conv2d/Linear
    before it in its container), which the weight-based Alg. 1 reads.
    """
    nodes, blocks = [], []

    def rebuild(m, path):
        if isinstance(m, ReLU):
            node = IFNode(name=path)
            nodes.append(node)
            return node
        if not m.children:
            return m                          # a leaf layer: reused, so weights are shared
        new = copy.copy(m)                    # shallow: params dicts are the same objects
        new.children = OrderedDict()
        last_weight = None
        first = len(nodes)
        for name, child in m.children.items():
            c = rebuild(child, f"{path}.{name}" if path else name)
            if isinstance(c, IFNode):
                c.source = last_weight
            elif isinstance(c, (Conv2d, Linear)):
                last_weight = c
            new.children[name] = c
        if isinstance(m, BasicBlock):
            blocks.append(range(first, len(nodes)))
        return new

    model.eval()
    tree = rebuild(model, "")
    return SNN(tree, nodes, blocks)


def relu_outputs(model: Module, x_batches):
    """Run the ANN (eval mode) and collect every ReLU's outputs: list over ReLUs of host arrays.

    ``x_batches`` yields normalised input batches on the model's device.
    """
    relus = [m for _, m in model.named_modules() if isinstance(m, ReLU)]
    model.eval()
    outs = [[] for _ in relus]
    try:
        for xb in x_batches:
            for r in relus:
                r.record = []
            model.forward(xb)
            for o, r in zip(outs, relus):
                o.append(to_host(r.record[0]))   # sync point: activations go to the host
    finally:
        for r in relus:
            r.record = None
    return [np.concatenate(o) for o in outs]


def _check_p(p: float) -> float:
    p = float(p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"the threshold quantile p must lie in (0, 1], got {p}")
    return p


def robust_quantile(values: np.ndarray, p: float, axis=None, seed: int = 0):
    """p-quantile of ``values`` (host array), exact up to MAX_QUANTILE_SAMPLES values.

    Layer-wise: over all values (zeros included). Beyond MAX_QUANTILE_SAMPLES values a
    seeded uniform random subsample of that many is used, which keeps memory bounded and
    moves a 0.99-quantile by far less than the spread between images.
    ``axis=1`` on a (C, M) array gives one quantile per row (channel-wise).
    """
    rng = np.random.default_rng(seed)
    if axis is None:
        flat = values.reshape(-1)
        if flat.size > MAX_QUANTILE_SAMPLES:
            flat = flat[rng.choice(flat.size, MAX_QUANTILE_SAMPLES, replace=False)]
        return float(np.quantile(flat, p))
    if values.shape[1] > MAX_QUANTILE_SAMPLES // max(1, values.shape[0]):
        k = MAX_QUANTILE_SAMPLES // values.shape[0]
        values = values[:, rng.choice(values.shape[1], k, replace=False)]
    return np.quantile(values, p, axis=1)


def balance_thresholds(snn: SNN, model: Module, x_batches, p: float = 0.99,
                       channelwise: bool = False, xp=np, per_block: bool = False):
    """Threshold balancing: set each IF node's V_th to the p-quantile of its ReLU's outputs.

    Layer-wise (default, the paper): one scalar per layer. Channel-wise: one value per
    channel, shape (C, 1, 1) for conv layers and (F,) for linear ones. A threshold that
    comes out 0 (a silent layer or channel) falls back to the layer's maximum, or 1.0 if
    the layer never activates, so no neuron gets V_th = 0. Returns the list of thresholds.

    ``per_block=True`` is the paper's ResNet treatment (Sec. 4.1.3, DESIGN.md point 5): the
    IF nodes of a residual block share one threshold, the p-quantile of all their ReLU
    outputs together (both have the block's output shape). The default gives every node
    its own.
    """
    p = _check_p(p)
    acts = relu_outputs(model, x_batches)
    if per_block:
        for b in snn.blocks:
            pooled = np.concatenate([acts[i] for i in b])     # (len(b) * N, C, H, W)
            for i in b:
                acts[i] = pooled
    ths = []
    for node, a in zip(snn.nodes, acts):
        layer_max = float(a.max()) if a.size else 0.0
        fallback = layer_max if layer_max > 0 else 1.0
        if not channelwise:
            th = robust_quantile(a, p)
            th = np.float32(th if th > 0 else fallback)
        else:
            C = a.shape[1]
            per_c = robust_quantile(np.moveaxis(a, 1, 0).reshape(C, -1), p, axis=1)
            per_c = np.where(per_c > 0, per_c, fallback).astype(np.float32)
            th = per_c.reshape((C,) + (1,) * (a.ndim - 2))
        node.v_th = to_device(th, xp) if np.ndim(th) else th
        ths.append(node.v_th)
    return ths
