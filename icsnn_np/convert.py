"""ANN -> SNN conversion (Sec. 3.1): every ReLU becomes an IF node; thresholds by balancing.

``convert(model)`` rebuilds the module tree with each ``ReLU`` replaced by an ``IFNode``,
*sharing* the ANN's weights. Threshold balancing (Sec. 3.1, 4.1.3; max-based in Diehl et al.
2015, the percentile of Rueckauer et al. 2017): V_th^l = the p-quantile of layer l's ReLU
outputs over calibration images of the training set.

The SNN carries how it is simulated: ``snn.run(x, T)`` steps it with ``snn.engine`` (the
teaching ``simulate``, unless e.g. ``runs.engine.use_engine`` plugged in the fast one).
"""
from __future__ import annotations

import numpy as np

from .backend import to_device, to_host, xp_of
from .checks import check_batch, check_finite, check_quantile, check_threshold
from .layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from .models import BasicBlock
from .module import Module, Sequential, rebuild
from .neurons import IFNode
from .simulate import simulate

# A quantile over more values than this is taken on a seeded uniform subsample of them.
MAX_QUANTILE_SAMPLES = 1 << 24


class SNN:
    """A converted network. ``flat``: the top-level modules in execution order (residual
    blocks whole); ``nodes``: its IF nodes in the order of the ANN's ReLUs; ``first``/``last``:
    indices in ``flat`` of the first and last module holding one (after ``last``, the linear
    readout: the output layer does not spike); ``blocks``: per residual block its nodes'
    indices (Sec. 4.3); ``ann``: the ANN, whose weights it shares; ``engine`` (``simulate``'s
    signature) and ``coding`` ({} = direct, or coding/mean/std/seed): what ``run`` uses."""

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
        """T steps on the normalised batch ``x`` with this SNN's engine and coding (``kw``:
        count / record / keep_v, or a coding setting of its own). Returns a SimResult."""
        return self.engine(self, x, T, **{**self.coding, **kw})

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
    """The paper's V_th from one layer's ReLU outputs ``a`` (N, ...): the p-quantile of all
    of them, zeros included. Where that is 0 (p below the layer's share of zeros) the run
    stops, naming the smallest p that works. Non-decreasing in p."""
    th = robust_quantile(a, p)
    if th <= 0:
        raise ZeroQuantile(p, {name: float(np.mean(a == 0))})
    return np.float32(th)


def balance_thresholds(snn: SNN, model: Module, x_batches, p: float = 0.99,
                       per_block: bool = False, rule=layer_threshold):
    """Set each IF node's V_th by ``rule`` (default the paper's ``layer_threshold``) from the
    outputs of its ReLU over ``x_batches`` at quantile p; returns the thresholds.
    ``per_block=True`` is the paper's ResNet treatment (Sec. 4.3): the nodes of a residual
    block share one quantile over all their outputs. ``rule(a, p, name)`` may return an array
    (per channel: ``beyond.thresholds.channel_threshold``); it goes to the model's device."""
    p = check_quantile(p)
    xp = xp_of(next(iter(model.state_dict().values())))
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
            ths.append(rule(a, p, node.name))
        except ZeroQuantile as e:
            zeros.update(e.zeros)
    if zeros:
        raise ZeroQuantile(p, zeros)
    for node, th in zip(snn.nodes, ths):
        node.v_th = check_threshold(to_device(th, xp) if np.ndim(th) else th, node.name)
    return [n.v_th for n in snn.nodes]
