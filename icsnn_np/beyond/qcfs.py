"""QCFS: train the ANN so that its activations already are the SNN's (Bu et al., ICLR 2022).

The quantisation-clip-floor-shift activation with L levels and a trainable threshold λ:

    y = λ clip(floor(x L / λ + 1/2) / L, 0, 1)

is what an IF neuron started at v(0) = λ/2 with threshold λ emits over L steps of a constant
input. An ANN trained with it has no rounding for the SNN to lose at T = L: converting takes
λ as V_th and starts every neuron at λ/2 (``qcfs_thresholds`` and the C-SNN ``half`` v(0)).

Backward, as the official code's autograd computes it (putshua/SNN_conversion_QCFS,
``MyFloor``, commit c27a446): the floor passes the gradient straight through, the clip
passes it where 0 <= q <= 1, q = floor(u L + 1/2)/L, u = x/λ; then dy/dx = 1 there and 0
elsewhere, and dy/dλ = q - u there, 1 where q > 1, 0 where q < 0 (summed over the layer).
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host, xp_of
from ..convert import relu_outputs, robust_quantile
from ..layers import ReLU
from ..module import rebuild

LAM_INIT = 8.0            # the official code's initial λ


class QCFS(ReLU):
    """The QCFS activation with ``levels`` L and a trainable λ (``params["lam"]``, shape (1,)).

    A ReLU to conversion (every ReLU becomes an IF node) and to threshold balancing, which
    records its outputs; only its forward and backward differ."""

    def __init__(self, levels: int, lam: float = LAM_INIT, dtype=np.float32):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise ValueError(f"QCFS levels L must be an integer >= 1, got {levels!r}")
        self.levels = int(levels)
        self.params["lam"] = np.array([lam], dtype=dtype)
        self.grads["lam"] = np.zeros(1, dtype=dtype)
        self._cache = None


    def forward(self, x):
        """x (N, ...) -> y = λ clip(floor(x L/λ + 1/2)/L, 0, 1), same shape."""
        xp, L = xp_of(x), self.levels
        lam = self.params["lam"].astype(x.dtype)
        u = x / lam
        q = xp.floor(u * L + 0.5) / L
        out = xp.clip(q, 0.0, 1.0) * lam
        if self.training:
            self._cache = (u, q)
        if self.record is not None:
            self.record.append(out)
        return out

    def backward(self, grad):
        """Straight through the floor, through the clip where 0 <= q <= 1 (the module docstring)."""
        u, q = self._cache
        inside = (q >= 0) & (q <= 1)
        dlam = grad * (inside * (q - u) + (q > 1))
        self.grads["lam"] += dlam.sum().reshape(1).astype(self.grads["lam"].dtype)
        return grad * inside


def with_qcfs(model, levels: int, lam=LAM_INIT):
    """A copy of ``model`` (weights shared) with every ReLU replaced by a QCFS activation;
    ``lam``: the initial λ, one for all or a list with one per ReLU in execution order."""
    dtype = next(iter(model.state_dict().values())).dtype
    lams = iter(lam) if np.ndim(lam) else None
    return rebuild(model, lambda m, path: QCFS(levels, float(next(lams) if lams else lam), dtype)
                   if type(m) is ReLU else m)


def initial_lams(model, x_batches, p: float = 0.999):
    """λ to start fine-tuning a trained ReLU ``model`` from: per layer the p-quantile of its
    ReLU outputs on ``x_batches`` (threshold balancing's value, where the ANN clips little)."""
    return [robust_quantile(a, p) for a in relu_outputs(model, x_batches)]


def qcfs_layers(model) -> list:
    """The model's QCFS activations in execution order (those conversion turns into nodes)."""
    return [m for _, m in model.named_modules() if isinstance(m, QCFS)]


def qcfs_thresholds(snn, model):
    """The QCFS reading of conversion: each IF node's V_th = λ of the activation it replaces
    (every activation of ``model`` must be QCFS). Returns the thresholds."""
    acts = [m for _, m in model.named_modules() if isinstance(m, ReLU)]
    if not acts or not all(isinstance(m, QCFS) for m in acts):
        raise ValueError("qcfs_thresholds needs a model whose every activation is QCFS")
    for node, m in zip(snn.nodes, acts):
        node.v_th = np.float32(to_host(m.params["lam"])[0])
        if not node.v_th > 0:
            raise ValueError(f"{node.name}: the trained QCFS threshold λ = {node.v_th:g} is not > 0")
    return [n.v_th for n in snn.nodes]
