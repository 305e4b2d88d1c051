"""ANN -> SNN conversion (Sec. 3.1): every ReLU becomes an IF node; thresholds by balancing.

``convert(model)`` rebuilds the module tree with each ``ReLU`` replaced by an ``IFNode``,
*sharing* the ANN's weights. Threshold balancing (Sec. 3.1, 4.1.3, refs. [27, 28]: Diehl et
al. 2015 by the maximum, Rueckauer et al. 2017 a percentile): V_th^l = the p-quantile of layer
l's ReLU outputs over training images. ``snn.run(x, T)`` steps the SNN with ``snn.engine`` (the
teaching ``simulate``, unless e.g. ``runs.engine.use_engine`` plugged in the fast one)."""
from __future__ import annotations

import numpy as np

from .backend import to_device, to_host, xp_of
from .checks import check_batch, check_finite, check_quantile, check_threshold
from .layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from .models import BasicBlock
from .module import Module, Sequential, rebuild
from .neurons import IFNode
from .simulate import simulate

MAX_QUANTILE_SAMPLES = 1 << 24      # the most values a quantile is taken over (robust_quantile)


class SNN:
    """A converted network: ``flat`` (top-level modules in execution order, residual blocks
    whole), ``nodes`` (its IF nodes in the ANN's ReLU order), ``first``/``last`` (the first and
    last module in ``flat`` holding one; after it the linear readout, which does not spike),
    ``blocks`` (per residual block its nodes' indices, Sec. 4.3), ``ann`` (whose weights it
    shares), ``engine`` and ``coding`` (what ``run`` uses: ``simulate``, {} = direct)."""

    def __init__(self, tree, nodes, blocks=(), ann=None):
        self.tree, self.nodes, self.ann = tree, nodes, ann
        self.engine, self.coding = simulate, {}
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

    def run(self, x, T: int, **kw):
        """T steps on ``x`` by its engine and coding (``kw``: count, record, keep_v); a SimResult."""
        return self.engine(self, x, T, **{**self.coding, **kw})

    def set_v0(self, v0s):
        """Set every node's initial potential v(0) (a list aligned with ``nodes``)."""
        if len(v0s) != len(self.nodes):
            raise ValueError(f"expected {len(self.nodes)} initial potentials, got {len(v0s)}")
        for n, v0 in zip(self.nodes, v0s):       # a NaN v(0) never fires: a silent constant
            check_finite(v0, f"{n.name or 'IF node'}: v(0)")
        for n, v0 in zip(self.nodes, v0s):       # all checked first: none set on an error
            n.v0 = v0

    def block_first(self):
        """Per node: False for the IF nodes of a residual block after its first one (the paper
        applies v(0) "only to the first layer in the block", Sec. 4.3)."""
        later = {i for b in self.blocks for i in b[1:]}
        return [i not in later for i in range(len(self.nodes))]


def convert(model: Module) -> SNN:
    """Rebuild ``model`` with each ReLU replaced by an IFNode (weights shared). Each node
    remembers ``source``, the Conv2d/Linear before it that drives it (Alg. 1 reads it)."""
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
    """Each ReLU's outputs (eval mode) over the normalised ``x_batches``: host arrays (N_total, ...)."""
    relus = [m for _, m in model.named_modules() if isinstance(m, ReLU)]
    model.eval()
    outs = [[] for _ in relus]
    try:
        for i, xb in enumerate(x_batches):
            for r, o in zip(relus, outs):
                r.record = o                  # the ReLU appends its output to o
            model.forward(check_batch(xb, f"calibration batch {i}", model))
            for o in outs:
                o[-1] = to_host(o[-1])        # sync point: activations go to the host
    finally:
        for r in relus:
            r.record = None
    if relus and not outs[0]:
        raise ValueError("threshold balancing needs at least one batch of calibration images")
    return [np.concatenate(o) for o in outs]


def robust_quantile(values: np.ndarray, p: float, seed: int = 0) -> float:
    """p-quantile of ``values`` (host), exact up to MAX_QUANTILE_SAMPLES values, beyond that
    on a seeded uniform subsample of them (the quantile of a large layer costs no more)."""
    flat = values.reshape(-1)
    if flat.size > MAX_QUANTILE_SAMPLES:
        flat = flat[np.random.default_rng(seed).choice(flat.size, MAX_QUANTILE_SAMPLES, replace=False)]
    return float(np.quantile(flat, p))


class ZeroQuantile(ValueError):
    """The p-quantile is 0 in layers ``zeros`` ({name: share of outputs that are 0})."""

    def __init__(self, p: float, zeros: dict):
        self.zeros, shares = zeros, ", ".join(f"{n}: {100 * z:.2f} %" for n, z in zeros.items())
        super().__init__(f"threshold balancing: the p-quantile is 0 at p = {p:g} in {shares} "
                         f"(outputs that are 0 on the calibration images); use a p above "
                         f"{max(zeros.values()):.4f}")


def layer_threshold(a, p: float, name: str):
    """The paper's V_th from one layer's ReLU outputs ``a`` (N, ...): their p-quantile, zeros
    included (non-decreasing in p); a 0 (p below the share of zeros) stops the run."""
    th = robust_quantile(a, p)
    if th <= 0:
        raise ZeroQuantile(p, {name: float(np.mean(a == 0))})
    return np.float32(th)


def balance_thresholds(snn: SNN, model: Module, x_batches, p: float = 0.99,
                       per_block: bool = False, rule=layer_threshold):
    """Set each IF node's V_th by ``rule(a, p, name)`` (the paper's ``layer_threshold``, or e.g.
    ``beyond.thresholds.channel_threshold``) from its ReLU's outputs over ``x_batches``; returns
    them. ``per_block``: one quantile for all nodes of a residual block (ResNets, Sec. 4.3)."""
    p, xp = check_quantile(p), xp_of(next(iter(model.state_dict().values())))
    acts = relu_outputs(model, x_batches)
    for node, a in zip(snn.nodes, acts):       # a NaN quantile would be a silent threshold
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{node.name}: the calibration activations contain NaN or inf "
                             f"(NaN/inf weights, or values beyond float32's range)")
    for b in snn.blocks if per_block else ():
        pooled = np.concatenate([acts[i] for i in b])         # (len(b) * N, C, H, W)
        acts = [pooled if i in b else a for i, a in enumerate(acts)]
    ths, zeros = [], {}
    for node, a in zip(snn.nodes, acts):      # every layer first: the error names the p for all
        try:
            ths.append(rule(a, p, node.name))
        except ZeroQuantile as e:
            zeros.update(e.zeros)
    if zeros:
        raise ZeroQuantile(p, zeros)
    for node, th in zip(snn.nodes, ths):
        node.v_th = check_threshold(to_device(th, xp) if np.ndim(th) else th, node.name)
    return [n.v_th for n in snn.nodes]
