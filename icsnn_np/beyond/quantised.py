"""The T-level ANN: what an SNN would compute without unevenness (a reference, beyond the
paper). Every ReLU becomes the clip-floor-shift quantiser of QCFS (Bu et al., ICLR 2022) at
its IF node's V_th: a reference level, not a bound.
"""
from __future__ import annotations

from ..backend import xp_of
from ..checks import check_T
from ..convert import SNN
from ..layers import ReLU
from ..module import Module, rebuild
from .thresholds import need_ann


class Quantiser(Module):
    """The T-level activation of an IF neuron with no unevenness error (QCFS's clip-floor-shift):
    (V_th / T) clip(floor(a T / V_th + shift), 0, T). shift = 1/2: v(0) = V_th/2; 0: v(0) = 0."""

    def __init__(self, v_th, T: int, shift: float = 0.5):
        super().__init__()
        self.v_th, self.T, self.shift = v_th, check_T(T), float(shift)

    def forward(self, x):
        xp = xp_of(x)
        th = xp.asarray(self.v_th, dtype=x.dtype)
        return xp.clip(xp.floor(x * (self.T / th) + self.shift), 0, self.T) * (th / self.T)


def quantised_ann(snn: SNN, T: int, shift: float = 0.5):
    """The SNN's ANN with every ReLU replaced by a ``Quantiser`` at that node's V_th: what the
    SNN would compute if every neuron received its input evenly (each step's input equal to
    the mean) and started at v(0) = shift V_th. A reference for the comparison: its loss is
    the quantisation error of T levels at these thresholds, which one start at V_th/2 does not
    remove; per-layer, per-channel or per-image v(0) change the rounding and can beat it (V_th
    choice, or QCFS training of the ANN, moves it). Shares the ANN's weights.
    """
    nodes = {n.name: n for n in snn.nodes}
    ann = need_ann(snn, "the quantised ANN")
    return rebuild(ann, lambda m, path: Quantiser(nodes[path].v_th, T, shift)
                   if isinstance(m, ReLU) else m)


