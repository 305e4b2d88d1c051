"""The building blocks of every network here: ``Module`` and ``Sequential``. A module has ``forward(x)`` and ``backward(grad_out) -> grad_in`` (explicit backprop, no
autograd); parameters in ``params``, their gradients under the same keys in ``grads``,
sub-modules in ``children``, named as PyTorch's ``state_dict`` (``features.0.weight``).

    net = Sequential(Conv2d(3, 8, 3, padding=1), ReLU(), Flatten(), Linear(8 * 32 * 32, 10))
    out = net.forward(x)                 # (N, 10);  net.backward(dloss_dout) fills m.grads
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np

from .backend import to_host, xp_of


class Module:
    """Parameters, gradients, buffers (saved, not trained), children, train/eval mode; a layer
    caches what its backward needs only while ``training``."""

    def __init__(self):
        self.params, self.grads, self.buffers = {}, {}, {}     # name -> array
        self.children: OrderedDict[str, Module] = OrderedDict()
        self.training = True

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        """Yield (pytorch-style name, module, key) for every parameter."""
        for mname, mod in self.named_modules():
            for key in mod.params:
                yield (f"{mname}.{key}" if mname else key), mod, key

    def named_state(self):
        """Yield (name, dict, key) for each parameter then buffer, module by module."""
        for mname, mod in self.named_modules():
            for store in (mod.params, mod.buffers):
                for key in store:
                    yield (f"{mname}.{key}" if mname else key), store, key

    def state_dict(self) -> "OrderedDict[str, object]":
        return OrderedDict((n, d[k]) for n, d, k in self.named_state())

    def load_state_dict(self, state: dict):
        """Copy arrays into the parameters and buffers in place; names and shapes must match."""
        own = {n: (d, k) for n, d, k in self.named_state()}
        missing, unexpected = [n for n in own if n not in state], [n for n in state if n not in own]
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for n, (d, k) in own.items():
            if tuple(state[n].shape) != tuple(d[k].shape):
                raise ValueError(f"shape mismatch for {n}: expected {tuple(d[k].shape)}, "
                                 f"got {tuple(state[n].shape)}")
            d[k][...] = move(state[n], xp_of(d[k]), d[k].dtype)

    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for _, m in self.named_modules():
            for g in m.grads.values():
                g[...] = 0

    def to(self, xp, dtype=None):
        """Move parameters and buffers to ``xp``'s device (and dtype) in place; returns self."""
        for _, m in self.named_modules():
            for k, v in list(m.params.items()):
                m.params[k] = move(v, xp, dtype)
                m.grads[k] = xp.zeros_like(m.params[k])
            for k, v in list(m.buffers.items()):
                m.buffers[k] = move(v, xp, dtype)
        return self

    def add_weights(self, shape, fan_in: int, bias: bool, rng=None, dtype=np.float32):
        """A He-initialised ``weight`` of ``shape`` (a zero ``bias``), zero gradients."""
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params["weight"] = he_normal(rng, shape, fan_in, dtype)
        if bias:
            self.params["bias"] = np.zeros(shape[0], dtype=dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def num_parameters(self) -> int:
        return int(sum(v.size for _, m in self.named_modules() for v in m.params.values()))


class Sequential(Module):
    """Run children in order; children are named "0", "1", ... or by an OrderedDict."""

    skips_input_grad = True     # backward(grad, input_grad=False) is understood

    def __init__(self, *layers):
        super().__init__()
        self.children.update(layers[0] if len(layers) == 1 and isinstance(layers[0], dict)
                             else ((str(i), layer) for i, layer in enumerate(layers)))

    def __getitem__(self, i):
        return list(self.children.values())[i]

    def forward(self, x):
        for layer in self.children.values():
            x = layer.forward(x)
        return x

    def backward(self, grad, input_grad: bool = True):
        """Last child to first; with ``input_grad=False`` (x is the data) a first layer may skip dL/dx."""
        layers = list(self.children.values())
        for layer in layers[:0:-1]:
            grad = layer.backward(grad)
        if not input_grad and getattr(layers[0], "skips_input_grad", False):
            return layers[0].backward(grad, input_grad=False)
        return layers[0].backward(grad)

    def flat(self):
        """Leaf modules in execution order, nested Sequentials expanded (blocks stay whole)."""
        for layer in self.children.values():
            yield from (layer.flat() if isinstance(layer, Sequential) else (layer,))


def rebuild(m, leaf, path: str = ""):
    """A copy of the module tree ``m`` with every leaf replaced by ``leaf(module, path)``
    (it may return the module): containers are shallow copies, parameters are *shared*.
    ``convert`` turns each ReLU into an IF node this way."""
    if not m.children:
        return leaf(m, path)
    new = copy.copy(m)
    new.children = OrderedDict((name, rebuild(c, leaf, f"{path}.{name}" if path else name))
                               for name, c in m.children.items())
    return new


def move(a, xp, dtype=None):
    """The array ``a`` (host or device) on ``xp``'s device as ``dtype`` (default its own)."""
    a = to_host(a) if xp is np else a        # CuPy refuses np.asarray of its arrays
    return xp.asarray(a, dtype=dtype or a.dtype)


def he_normal(rng: np.random.Generator, shape, fan_in: int, dtype):
    """He (Kaiming) normal initialisation for ReLU nets: std = sqrt(2 / fan_in)."""
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)
