"""Hand-written layers with explicit backprop, for NumPy and CuPy alike.

Every layer has ``forward(x)`` and ``backward(grad_out) -> grad_in``; parameters live in
``self.params`` and their gradients under the same keys in ``self.grads``. A layer caches
what its backward needs only while ``self.training`` is true.

Activations are NCHW and conv weights OIHW, as in PyTorch, so a PyTorch ``state_dict``
maps onto ours name for name. Convolution is im2col + one GEMM. Internally a conv works on
the (C, N, H, W) view of its input and returns the (N, O, H, W) *view* of its (O, N, H, W)
result: the next conv's ``transpose(1, 0, 2, 3)`` is then contiguous again, so no large
buffer is ever transposed by copy. Naive loop references (``conv2d_naive``,
``avgpool2d_naive``) sit at the bottom for the tests.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .backend import xp_of


# --------------------------------------------------------------------------- base classes
class Module:
    """Base class: parameters, gradients, children, train/eval mode, state_dict."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.children: OrderedDict[str, Module] = OrderedDict()
        self.training = True

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # -- traversal -------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        """Yield (pytorch-style name, module, key) for every parameter."""
        for mname, mod in self.named_modules():
            for key in mod.params:
                yield (f"{mname}.{key}" if mname else key), mod, key

    def state_dict(self) -> "OrderedDict[str, object]":
        return OrderedDict((n, m.params[k]) for n, m, k in self.named_parameters())

    def load_state_dict(self, state: dict):
        """Copy arrays into the parameters in place; names and shapes must match exactly."""
        own = {n: (m, k) for n, m, k in self.named_parameters()}
        missing = [n for n in own if n not in state]
        unexpected = [n for n in state if n not in own]
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for n, (m, k) in own.items():
            src = state[n]
            if tuple(src.shape) != tuple(m.params[k].shape):
                raise ValueError(f"shape mismatch for {n}: expected {tuple(m.params[k].shape)}, "
                                 f"got {tuple(src.shape)}")
            xp = xp_of(m.params[k])
            m.params[k][...] = xp.asarray(src, dtype=m.params[k].dtype)

    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for _, m in self.named_modules():
            for k in m.grads:
                m.grads[k][...] = 0

    def to(self, xp, dtype=None):
        """Move parameters to ``xp``'s device (and dtype) in place; returns self."""
        for _, m in self.named_modules():
            for k, v in list(m.params.items()):
                m.params[k] = xp.asarray(v, dtype=dtype or v.dtype)
                m.grads[k] = xp.zeros_like(m.params[k])
        return self

    def num_parameters(self) -> int:
        return int(sum(m.params[k].size for _, m, k in self.named_parameters()))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        if not self.children:
            return f"{type(self).__name__}({self.extra_repr()})"
        inner = "\n".join(f"  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.children.items())
        return f"{type(self).__name__}(\n{inner}\n)"


def _he_normal(rng: np.random.Generator, shape, fan_in: int, dtype):
    """He (Kaiming) normal initialisation for ReLU nets: std = sqrt(2 / fan_in)."""
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


# --------------------------------------------------------------------------- im2col helpers
def _im2col(x_cnhw, kh, kw, stride, padding):
    """(C, N, H, W) -> cols (C*kh*kw, N*Ho*Wo), looping over the kh*kw kernel offsets only."""
    xp = xp_of(x_cnhw)
    C, N, H, W = x_cnhw.shape
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    if padding:
        xpad = xp.zeros((C, N, H + 2 * padding, W + 2 * padding), dtype=x_cnhw.dtype)
        xpad[:, :, padding:padding + H, padding:padding + W] = x_cnhw
    else:
        xpad = x_cnhw
    cols = xp.empty((C, kh, kw, N, Ho, Wo), dtype=x_cnhw.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xpad[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride]
    return cols.reshape(C * kh * kw, N * Ho * Wo), Ho, Wo


def _col2im(dcols, shape_cnhw, kh, kw, stride, padding, Ho, Wo):
    """Adjoint of _im2col: scatter-add (C*kh*kw, N*Ho*Wo) back to (C, N, H, W)."""
    xp = xp_of(dcols)
    C, N, H, W = shape_cnhw
    d = dcols.reshape(C, kh, kw, N, Ho, Wo)
    dx = xp.zeros((C, N, H + 2 * padding, W + 2 * padding), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += d[:, i, j]
    if padding:
        dx = dx[:, :, padding:padding + H, padding:padding + W]
    return dx


# --------------------------------------------------------------------------- layers
class Conv2d(Module):
    """2-D convolution, OIHW weights, NCHW activations: y = W * x + b (im2col + one GEMM)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=np.float32):
        super().__init__()
        k = kernel_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = k, stride, padding
        rng = rng if rng is not None else np.random.default_rng(0)
        fan_in = in_channels * k * k
        self.params["weight"] = _he_normal(rng, (out_channels, in_channels, k, k), fan_in, dtype)
        self.grads["weight"] = np.zeros_like(self.params["weight"])
        if bias:
            self.params["bias"] = np.zeros(out_channels, dtype=dtype)
            self.grads["bias"] = np.zeros_like(self.params["bias"])
        self._cache = None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding}")

    def forward(self, x):
        # x: (N, C, H, W) -> (N, O, Ho, Wo)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        N = x.shape[0]
        k = self.kernel_size
        cols, Ho, Wo = _im2col(x.transpose(1, 0, 2, 3), k, k, self.stride, self.padding)
        W = self.params["weight"].reshape(self.out_channels, -1)      # (O, C*k*k)
        out = W @ cols                                                  # (O, N*Ho*Wo): the GEMM
        if "bias" in self.params:
            out += self.params["bias"][:, None]
        if self.training:
            self._cache = (cols, x.shape, Ho, Wo)
        return out.reshape(self.out_channels, N, Ho, Wo).transpose(1, 0, 2, 3)

    def backward(self, grad):
        cols, xshape, Ho, Wo = self._cache
        N, C, H, Wd = xshape
        k = self.kernel_size
        g = grad.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)  # (O, N*Ho*Wo)
        self.grads["weight"] += (g @ cols.T).reshape(self.params["weight"].shape)
        if "bias" in self.params:
            self.grads["bias"] += g.sum(axis=1)
        W = self.params["weight"].reshape(self.out_channels, -1)
        dcols = W.T @ g                                                 # (C*k*k, N*Ho*Wo)
        dx = _col2im(dcols, (C, N, H, Wd), k, k, self.stride, self.padding, Ho, Wo)
        return dx.transpose(1, 0, 2, 3)


class Linear(Module):
    """Fully connected layer, PyTorch layout: weight (out, in), y = x W^T + b."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params["weight"] = _he_normal(rng, (out_features, in_features), in_features, dtype)
        self.grads["weight"] = np.zeros_like(self.params["weight"])
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)
            self.grads["bias"] = np.zeros_like(self.params["bias"])
        self._x = None

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"

    def forward(self, x):
        # x: (N, in) -> (N, out)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Linear expects (N, {self.in_features}), got {tuple(x.shape)}")
        if self.training:
            self._x = x
        out = x @ self.params["weight"].T
        if "bias" in self.params:
            out += self.params["bias"]
        return out

    def backward(self, grad):
        self.grads["weight"] += grad.T @ self._x
        if "bias" in self.params:
            self.grads["bias"] += grad.sum(axis=0)
        return grad @ self.params["weight"]


class ReLU(Module):
    """max(x, 0) (Eq. 1). In a converted SNN every ReLU becomes an IF node."""

    def __init__(self):
        super().__init__()
        self._mask = None

    record = None  # set to a list to collect outputs (threshold balancing reads them)

    def forward(self, x):
        if self.training:
            self._mask = x > 0
        out = xp_of(x).maximum(x, 0)
        if self.record is not None:
            self.record.append(out)
        return out

    def backward(self, grad):
        return grad * self._mask


class AvgPool2d(Module):
    """Average pooling without padding; loops over the k*k window offsets, not over pixels."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size
        self._shape = None

    def extra_repr(self):
        return f"k={self.kernel_size}, s={self.stride}"

    def _out_hw(self, H, W):
        k, s = self.kernel_size, self.stride
        return (H - k) // s + 1, (W - k) // s + 1

    def forward(self, x):
        # x: (N, C, H, W) -> (N, C, Ho, Wo)
        if x.ndim != 4:
            raise ValueError(f"AvgPool2d expects (N, C, H, W), got {tuple(x.shape)}")
        k, s = self.kernel_size, self.stride
        Ho, Wo = self._out_hw(*x.shape[2:])
        out = x[:, :, 0:s * Ho:s, 0:s * Wo:s].copy()
        for i in range(k):
            for j in range(k):
                if i or j:
                    out += x[:, :, i:i + s * Ho:s, j:j + s * Wo:s]
        out *= 1.0 / (k * k)
        if self.training:
            self._shape = x.shape
        return out

    def backward(self, grad):
        xp = xp_of(grad)
        k, s = self.kernel_size, self.stride
        Ho, Wo = grad.shape[2:]
        g = grad * (1.0 / (k * k))
        if s == k and self._shape[2] == k * Ho and self._shape[3] == k * Wo:
            # non-overlapping windows that tile the input: one broadcasted write
            dx = xp.broadcast_to(g[:, :, :, None, :, None], g.shape[:3] + (k, Wo, k))
            return dx.reshape(self._shape)
        dx = xp.zeros(self._shape, dtype=grad.dtype)
        for i in range(k):
            for j in range(k):
                dx[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += g
        return dx


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) in NCHW order (PyTorch's flatten order)."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._shape)


class Sequential(Module):
    """Run children in order; children are named "0", "1", ... or by an OrderedDict."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (dict, OrderedDict)):
            for name, layer in layers[0].items():
                self.children[name] = layer
        else:
            for i, layer in enumerate(layers):
                self.children[str(i)] = layer

    def __iter__(self):
        return iter(self.children.values())

    def __len__(self):
        return len(self.children)

    def __getitem__(self, i):
        return list(self.children.values())[i]

    def forward(self, x):
        for layer in self.children.values():
            x = layer.forward(x)
        return x

    def backward(self, grad):
        for layer in reversed(self.children.values()):
            grad = layer.backward(grad)
        return grad

    def flat(self):
        """Leaf modules in execution order, nested Sequentials expanded (blocks stay whole)."""
        for layer in self.children.values():
            if isinstance(layer, Sequential):
                yield from layer.flat()
            else:
                yield layer


class BasicBlock(Module):
    """ResNet basic block without BatchNorm: relu(conv2(relu(conv1(x))) + shortcut(x)).

    The shortcut is the identity, or a 1x1 strided convolution (``shortcut.0``) when the
    stride or the number of channels changes (He et al. 2016, option B).
    """

    def __init__(self, in_channels, out_channels, stride=1, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.children["conv1"] = Conv2d(in_channels, out_channels, 3, stride, 1, rng=rng, dtype=dtype)
        self.children["relu1"] = ReLU()
        self.children["conv2"] = Conv2d(out_channels, out_channels, 3, 1, 1, rng=rng, dtype=dtype)
        # relu2 is listed before the shortcut so that, in children order, every ReLU follows
        # the weight layer that drives it (conversion relies on this; names are unaffected).
        self.children["relu2"] = ReLU()
        if stride != 1 or in_channels != out_channels:
            self.children["shortcut"] = Sequential(
                Conv2d(in_channels, out_channels, 1, stride, 0, rng=rng, dtype=dtype))

    def shortcut(self, x):
        sc = self.children.get("shortcut")
        return x if sc is None else sc.forward(x)

    def forward(self, x):
        c = self.children
        h = c["conv2"].forward(c["relu1"].forward(c["conv1"].forward(x)))
        return c["relu2"].forward(h + self.shortcut(x))

    def backward(self, grad):
        c = self.children
        g = c["relu2"].backward(grad)
        gx = c["conv1"].backward(c["relu1"].backward(c["conv2"].backward(g)))
        sc = c.get("shortcut")
        return gx + (g if sc is None else sc.backward(g))


# --------------------------------------------------------------------------- naive references
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """Direct-definition convolution with explicit loops (slow; for tests only).

    y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * xpad[n, c, i*s + p, j*s + q]
    """
    x = np.asarray(x)
    weight = np.asarray(weight)
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    y = np.zeros((N, O, Ho, Wo), dtype=np.float64)
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp_[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[n, o, i, j] = np.sum(patch.astype(np.float64) * weight[o])
            if bias is not None:
                y[n, o] += bias[o]
    return y


def avgpool2d_naive(x, kernel_size, stride=None):
    """Average pooling with explicit loops (slow; for tests only)."""
    x = np.asarray(x)
    s = stride or kernel_size
    k = kernel_size
    N, C, H, W = x.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    y = np.zeros((N, C, Ho, Wo), dtype=np.float64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    y[n, c, i, j] = x[n, c, i * s:i * s + k, j * s:j * s + k].mean()
    return y
