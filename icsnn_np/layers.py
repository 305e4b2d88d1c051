"""The ANN's layers, written out (``forward``/``backward``, module.py; NCHW, OIHW as PyTorch).

A convolution is *im2col + one matrix product*: ``im2col`` copies every k x k input patch
into a column, so a batch's convolution is ``W (O, C*k*k) @ cols (C*k*k, N*Ho*Wo)``; its
backward is two more products and the adjoint scatter ``col2im``. Loops run over the k*k
kernel offsets only (the four-loop definition it is checked against: the test aid ``conv2d_naive``)."""
from __future__ import annotations

import numpy as np

from .backend import xp_of
from .module import Module


def conv_out_size(n: int, k: int, stride: int, padding: int) -> int:
    """floor((n + 2p - k) / s) + 1, a convolution's output length along one axis."""
    return (n + 2 * padding - k) // stride + 1


def im2col(x, k: int, stride: int = 1, padding: int = 0):
    """(N, C, H, W) -> (cols (C*k*k, N*Ho*Wo), Ho, Wo): column j holds the zero-padded k x k
    patch (all C channels) under output pixel j, rows ordered (c, i, j) as an OIHW kernel."""
    xp = xp_of(x)
    N, C, H, W = x.shape
    Ho, Wo = conv_out_size(H, k, stride, padding), conv_out_size(W, k, stride, padding)
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = xp.empty((C, k, k, N, Ho, Wo), dtype=x.dtype)
    for i in range(k):                  # kernel offsets only: k*k strided copies
        for j in range(k):
            cols[:, i, j] = x[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride].transpose(1, 0, 2, 3)
    return cols.reshape(C * k * k, N * Ho * Wo), Ho, Wo


def col2im(dcols, x_shape, k: int, stride: int = 1, padding: int = 0):
    """The adjoint of ``im2col``: scatter-add (C*k*k, N*Ho*Wo) back onto (N, C, H, W)."""
    xp = xp_of(dcols)
    N, C, H, W = x_shape
    Ho, Wo = conv_out_size(H, k, stride, padding), conv_out_size(W, k, stride, padding)
    d = dcols.reshape(C, k, k, N, Ho, Wo)
    dx = xp.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=dcols.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += d[:, i, j].transpose(1, 0, 2, 3)
    return dx[:, :, padding:padding + H, padding:padding + W]


class Window(Module):
    """What Conv2d and AvgPool2d share: a k x k window slid over (N, C, H, W), one input check."""

    kernel_size, stride, padding, in_channels, what = 1, 1, 0, None, "window"

    def out_size(self, H: int, W: int):
        return tuple(conv_out_size(n, self.kernel_size, self.stride, self.padding) for n in (H, W))

    def check_input(self, x):
        """A clear error for a wrong shape, before any work; returns (Ho, Wo)."""
        name, c = type(self).__name__, self.in_channels
        if x.ndim != 4 or (c is not None and x.shape[1] != c):
            raise ValueError(f"{name} expects (N, {c or 'C'}, H, W), got {tuple(x.shape)}")
        Ho, Wo = self.out_size(*x.shape[2:])
        if Ho < 1 or Wo < 1:
            raise ValueError(f"{name}: input {tuple(x.shape[2:])} is smaller than the "
                             f"{self.what} {self.kernel_size} with padding {self.padding}")
        return Ho, Wo


class Conv2d(Window):
    """2-D convolution (cross-correlation, as PyTorch): y = W * x + b, OIHW weights."""

    what, skips_input_grad = "kernel", True     # backward(grad, input_grad=False) skips dL/dx

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=np.float32):
        super().__init__()
        k = kernel_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = k, stride, padding
        self.add_weights((out_channels, in_channels, k, k), in_channels * k * k, bias, rng, dtype)

    def forward(self, x):
        """x: (N, C, H, W) -> (N, O, Ho, Wo)."""
        Ho, Wo = self.check_input(x)
        N, O = x.shape[0], self.out_channels
        cols, _, _ = im2col(x, self.kernel_size, self.stride, self.padding)   # (C*k*k, N*Ho*Wo)
        out = self.params["weight"].reshape(O, -1) @ cols                     # the one GEMM: (O, N*Ho*Wo)
        if "bias" in self.params:
            out += self.params["bias"][:, None]
        if self.training:
            self._cache = x            # backward rebuilds cols: less memory than keeping them
        return out.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)

    def backward(self, grad, input_grad: bool = True):
        """Add dL/dW, dL/db to ``grads``; return dL/dx (None when not ``input_grad``)."""
        x, O = self._cache, self.out_channels
        cols, _, _ = im2col(x, self.kernel_size, self.stride, self.padding)   # (C*k*k, N*Ho*Wo)
        g = grad.transpose(1, 0, 2, 3).reshape(O, -1)                         # (O, N*Ho*Wo)
        self.grads["weight"] += (g @ cols.T).reshape(self.params["weight"].shape)
        if "bias" in self.params:
            self.grads["bias"] += g.sum(axis=1)
        if not input_grad:
            return None
        dcols = self.params["weight"].reshape(O, -1).T @ g                    # (C*k*k, N*Ho*Wo)
        return col2im(dcols, x.shape, self.kernel_size, self.stride, self.padding)


class Linear(Module):
    """Fully connected layer, PyTorch layout: weight (out, in), y = x W^T + b."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.add_weights((out_features, in_features), in_features, bias, rng, dtype)

    def forward(self, x):
        """x: (N, in) -> (N, out)."""
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
    """max(x, 0) (Eq. 1); an IF node once converted. ``record``: a list for its outputs (balancing)."""

    record = None

    def forward(self, x):
        mask = x > 0
        if self.training:
            self._mask = mask
        out = x * mask
        if self.record is not None:
            self.record.append(out)
        return out

    def backward(self, grad):
        return grad * self._mask


class AvgPool2d(Window):
    """Average pooling without padding: the mean of each k x k window (stride s, default k)."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride or kernel_size

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, Ho, Wo); a sum over the k*k window offsets."""
        Ho, Wo = self.check_input(x)
        k, s = self.kernel_size, self.stride
        out = sum(x[:, :, i:i + s * Ho:s, j:j + s * Wo:s] for i in range(k) for j in range(k))
        if self.training:
            self._shape = x.shape
        return out * (1.0 / (k * k))

    def backward(self, grad):
        """Each input pixel gets 1/k^2 of the gradient of every window it belongs to."""
        k, s, (Ho, Wo) = self.kernel_size, self.stride, grad.shape[2:]
        g = grad * (1.0 / (k * k))
        dx = xp_of(grad).zeros(self._shape, dtype=g.dtype)
        for i in range(k):
            for j in range(k):
                dx[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += g
        return dx


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) in NCHW order (PyTorch's flatten order)."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._shape)
