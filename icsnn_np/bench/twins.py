"""The same computations in PyTorch, for the benchmark's comparison columns.

PyTorch is never imported by the package: only here, inside functions, when installed.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host
from ..layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from ..neurons import IFNode


def import_torch(threads: int, note: list):
    """Import torch (never at package import time) with ``threads`` threads, or None."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        note.append("torch is not installed: the PyTorch columns are skipped "
                    "(pip install torch to compare)")
        return None
    torch.set_num_threads(threads)
    return torch


def torch_snn(torch, snn, device):
    """The same IF simulation in PyTorch eager, step by step the usual way.

    Every step runs the whole network on the (constant, direct-coded) image: conv / pool /
    linear as in the ANN, each ReLU an IF node: v = v + I; s = (v > V_th); v -= s * V_th;
    the next layer gets s * V_th. The output is the time average of the last linear layer.
    Plain feed-forward (VGG-style) networks only.
    """
    F = torch.nn.functional
    t = lambda a: torch.as_tensor(np.asarray(to_host(a)), device=device)  # noqa: E731
    ops = []
    for m in snn.flat:
        if isinstance(m, Conv2d):
            ops.append(("conv", t(m.params["weight"]), t(m.params["bias"]), m.stride, m.padding))
        elif isinstance(m, AvgPool2d):
            ops.append(("pool", m.kernel_size, m.stride))
        elif isinstance(m, Flatten):
            ops.append(("flatten",))
        elif isinstance(m, Linear):
            ops.append(("linear", t(m.params["weight"]), t(m.params["bias"])))
        elif isinstance(m, IFNode):
            ops.append(("if", t(np.asarray(to_host(m.v_th), np.float32)),
                        t(np.asarray(to_host(m.v0), np.float32))))
        else:
            raise ValueError(f"the PyTorch reference handles plain VGG-style networks, "
                             f"not {type(m).__name__}")

    def run(x, T):
        with torch.inference_mode():
            v = [None] * len(ops)
            acc = None
            for _ in range(T):
                h = x
                for i, op in enumerate(ops):
                    if op[0] == "conv":
                        h = F.conv2d(h, op[1], op[2], stride=op[3], padding=op[4])
                    elif op[0] == "pool":
                        h = F.avg_pool2d(h, op[1], op[2])
                    elif op[0] == "flatten":
                        h = h.flatten(1)
                    elif op[0] == "linear":
                        h = F.linear(h, op[1], op[2])
                    else:
                        th = op[1]
                        v[i] = (op[2] + h) if v[i] is None else v[i] + h
                        s = (v[i] > th).float()
                        v[i] -= s * th
                        h = s * th
                acc = h if acc is None else acc + h
            return acc / T
    return run


def torch_model(torch, model):
    """Our feed-forward model rebuilt in torch.nn with the same weights."""
    nn = torch.nn
    layers = []
    for m in model.flat():
        if isinstance(m, Conv2d):
            c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
        elif isinstance(m, Linear):
            c = nn.Linear(m.in_features, m.out_features)
        elif isinstance(m, ReLU):
            c = nn.ReLU()
        elif isinstance(m, AvgPool2d):
            c = nn.AvgPool2d(m.kernel_size, m.stride)
        elif isinstance(m, Flatten):
            c = nn.Flatten()
        else:
            raise ValueError(f"no torch twin for {type(m).__name__}")
        if m.params:
            with torch.no_grad():
                c.weight.copy_(torch.as_tensor(to_host(m.params["weight"])))
                c.bias.copy_(torch.as_tensor(to_host(m.params["bias"])))
        layers.append(c)
    return nn.Sequential(*layers)
