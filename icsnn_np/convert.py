"""ANN -> SNN conversion: every ReLU becomes an IF node; thresholds by balancing.

``convert(model)`` returns an ``SNN`` that *shares* the ANN's weight arrays (no copies):
the module tree is rebuilt with each ``ReLU`` replaced by an ``IFNode`` and every other
layer reused as is, so residual blocks convert like plain stacks.

Threshold balancing (Rueckauer et al. 2017, "robust normalisation"; paper Sec. 3.1 and
4.1.3): V_th^l = p-quantile of layer l's ReLU outputs over a calibration subset of the
training set, per layer (the paper) or per channel (an option).
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

    ``flat``      the top-level modules in execution order (blocks kept whole)
    ``nodes``     every IFNode, in the order of the ANN's ReLUs
    ``first``     index in ``flat`` of the first module that holds an IF node
    ``last``      index in ``flat`` of the last module that holds an IF node; the modules
                  after it form the *readout*, which must be linear (Linear, Flatten,
                  AvgPool2d, Conv2d): the output layer integrates without spiking, and the
                  prediction is the readout applied to the time-average of its input.
    ``blocks``    per residual block, the indices in ``nodes`` of its IF nodes (relu1, relu2),
                  for the paper's block treatment (README, Readings of the paper)
    ``ann``       the ANN it was converted from (``convert``), whose weights it shares: what
                  the ANN-guided methods (methods.py: SNN Calibration, MSE thresholds) compare to
    ``prerun``    a ``simulate.PreRun`` every simulation of it starts with, or None (set by
                  ``calibrate_variant`` for the pre-run methods COS and SRP, methods.py)
    """

    def __init__(self, tree, nodes, blocks=(), ann=None):
        self.tree = tree
        self.ann, self.prerun = ann, None
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
        for n, v0 in zip(self.nodes, v0s):       # a NaN v(0) never fires: a silent constant
            check_finite(v0, f"{n.name or 'IF node'}: v(0)")
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
    return isinstance(m, IFNode) or any(_contains_node(c) for c in m.children.values())


def convert(model: Module) -> SNN:
    """Rebuild ``model`` with each ReLU replaced by an IFNode (weights shared, not copied).

    Each node remembers ``source``, the weight layer that drives it (the last Conv2d/Linear
    before it in its container), which the weight-based Alg. 1 reads.
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
    """Run the ANN (eval mode) and collect every ReLU's outputs: list over ReLUs of host arrays.

    ``x_batches`` yields normalised input batches on the model's device.
    """
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

    ``per_block=True`` is the paper's ResNet treatment (Sec. 4.1.3; README, Readings of the
    paper): the IF nodes of a residual block share one threshold, the p-quantile of all their ReLU
    outputs together (both have the block's output shape). The default gives every node
    its own.
    """
    p = check_quantile(p)
    acts = relu_outputs(model, x_batches)
    for node, a in zip(snn.nodes, acts):       # a NaN quantile would silently become V_th = 1
        if not np.all(np.isfinite(a)):         # (the images are checked: weights or overflow)
            raise ValueError(f"{node.name}: the calibration activations contain NaN or inf "
                             f"(NaN/inf weights, or values beyond float32's range)")
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
        node.v_th = check_threshold(to_device(th, xp) if np.ndim(th) else th, node.name)
        ths.append(node.v_th)
    return ths
