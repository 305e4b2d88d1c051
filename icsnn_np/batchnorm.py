"""BatchNorm2d with explicit backprop, and folding it into the preceding convolution.

The paper trains its ANNs without BatchNorm (Sec. 4.1.1), but most networks people bring
from PyTorch have it. A BN layer after a conv is, in eval mode, a per-channel affine map

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias  =  s * x + (bias - s * running_mean)

with s = weight / sqrt(running_var + eps), so it folds into the conv before it:

    W' = W * s  (per output channel),   b' = (b - running_mean) * s + bias

``fold_batchnorm(model)`` does that for every conv + BN pair and returns the plain network
(``vgg16_bn`` -> the ``vgg16`` structure, names included), which ``convert.convert`` takes
as is. Only eval-mode BN folds: with batch statistics the map depends on the batch.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from .backend import xp_of
from .layers import Conv2d
from .module import Module, Sequential


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) for each channel (Ioffe & Szegedy 2015), as PyTorch.

    train:  y = (x - mean_B) / sqrt(var_B + eps) * weight + bias, var_B biased (divide by m);
            running_mean <- (1 - momentum) * running_mean + momentum * mean_B
            running_var  <- (1 - momentum) * running_var  + momentum * var_B * m / (m - 1)
    eval:   the running statistics replace the batch ones.

    m = N*H*W values per channel. Parameters ``weight`` (gamma), ``bias`` (beta); buffers
    ``running_mean``, ``running_var`` (saved in the state_dict, never trained). PyTorch's
    ``num_batches_tracked`` counter is not kept: it only matters for momentum=None.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.params["weight"] = np.ones(num_features, dtype=dtype)
        self.params["bias"] = np.zeros(num_features, dtype=dtype)
        for k in self.params:
            self.grads[k] = np.zeros_like(self.params[k])
        self.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=dtype)
        self._cache = None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def scale_shift(self):
        """The eval-mode map as y = scale * x + shift; both (C,), computed in float64."""
        xp = xp_of(self.params["weight"])
        w, b = (self.params[k].astype(xp.float64) for k in ("weight", "bias"))
        mean, var = (self.buffers[k].astype(xp.float64) for k in ("running_mean", "running_var"))
        scale = w / xp.sqrt(var + self.eps)
        return scale, b - mean * scale

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, H, W) in x's memory order."""
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d expects (N, {self.num_features}, H, W), got {tuple(x.shape)}")
        xp = xp_of(x)
        col = (1, -1, 1, 1)                           # per-channel values against (N, C, H, W)
        out = xp.empty_like(x)                        # keeps the memory order (channels-last)
        if not self.training:
            scale, shift = self.scale_shift()
            xp.multiply(x, scale.astype(x.dtype).reshape(col), out=out)
            out += shift.astype(x.dtype).reshape(col)
            return out
        m = x.size // self.num_features
        if m < 2:
            raise ValueError("BatchNorm2d in training mode needs more than one value per channel "
                             f"(got input {tuple(x.shape)})")
        mean = x.mean(axis=(0, 2, 3))                                        # (C,)
        xp.subtract(x, mean.reshape(col), out=out)                           # x - mean
        var = (out * out).mean(axis=(0, 2, 3))                               # biased
        invstd = 1.0 / xp.sqrt(var + self.eps)
        out *= invstd.reshape(col)                                           # x_hat
        rm, rv, mom = self.buffers["running_mean"], self.buffers["running_var"], self.momentum
        rm *= 1 - mom
        rm += mom * mean
        rv *= 1 - mom
        rv += mom * var * (m / (m - 1))                                      # unbiased, as PyTorch
        self._cache = (out.copy(), invstd)
        out *= self.params["weight"].reshape(col)
        out += self.params["bias"].reshape(col)
        return out

    def backward(self, grad):
        """Gradients through the batch statistics (training-mode forward only)."""
        if self._cache is None:
            raise RuntimeError("BatchNorm2d.backward needs a training-mode forward first")
        xhat, invstd = self._cache
        col = (1, -1, 1, 1)
        m = grad.size // self.num_features
        dbias = grad.sum(axis=(0, 2, 3))
        dweight = (grad * xhat).sum(axis=(0, 2, 3))
        self.grads["bias"] += dbias
        self.grads["weight"] += dweight
        # dx = gamma * invstd / m * (m * g - sum(g) - x_hat * sum(g * x_hat))
        k = (self.params["weight"] * invstd / m).reshape(col)
        return k * (m * grad - dbias.reshape(col) - xhat * dweight.reshape(col))


# --------------------------------------------------------------------------- folding
def fold_into_conv(conv: Conv2d, bn: BatchNorm2d):
    """Fold the eval-mode ``bn`` into ``conv`` in place (the conv gains a bias if it had none)."""
    if conv.out_channels != bn.num_features:
        raise ValueError(f"cannot fold BatchNorm2d({bn.num_features}) into a conv with "
                         f"{conv.out_channels} output channels")
    w = conv.params["weight"]
    xp = xp_of(w)
    scale, shift = bn.scale_shift()                                       # float64 (O,)
    b = conv.params["bias"].astype(xp.float64) if "bias" in conv.params else 0.0
    conv.params["weight"] = (w.astype(xp.float64) * scale.reshape(-1, 1, 1, 1)).astype(w.dtype)
    conv.params["bias"] = (b * scale + shift).astype(w.dtype)             # (b - mean) s + beta
    conv.grads["weight"] = xp.zeros_like(conv.params["weight"])
    conv.grads["bias"] = xp.zeros_like(conv.params["bias"])


def _fold(mod: Module, path: str):
    kept, removed = OrderedDict(), False
    for name, child in mod.children.items():
        full = f"{path}.{name}" if path else name
        if isinstance(child, BatchNorm2d):
            prev = next(reversed(kept.values()), None) if kept else None
            if not isinstance(prev, Conv2d):
                raise ValueError(f"cannot fold BatchNorm2d {full!r}: it does not directly follow "
                                 f"a Conv2d in its container")
            fold_into_conv(prev, child)
            removed = True
            continue
        _fold(child, full)
        kept[name] = child
    if removed and isinstance(mod, Sequential) and all(k.isdigit() for k in mod.children):
        # renumber so that the names are those of the plain model (features.0, features.2, ...)
        kept = OrderedDict((str(i), c) for i, c in enumerate(kept.values()))
    mod.children = kept


def fold_batchnorm(model: Module, inplace: bool = False) -> Module:
    """An equivalent BN-free model: each BatchNorm2d folded into the Conv2d just before it.

    Uses the running statistics (eval mode); the result is in eval mode and has the plain
    architecture's structure and names (``vgg_cpu_bn`` -> ``vgg_cpu``, ``resnet20_bn`` ->
    ``resnet20``), so it saves as a plain checkpoint and converts unchanged. The input model
    is left untouched unless ``inplace``. A BN that does not follow a conv raises ValueError.
    """
    if not inplace:
        # copy weights and structure, not the activations layers cached for backward
        memo = {id(v): None for _, mod in model.named_modules() for k, v in vars(mod).items()
                if k in ("_cache", "_x", "_mask") and v is not None}
        model = copy.deepcopy(model, memo)
    m = model
    _fold(m, "")
    return m.eval()


def plain_arch(arch: str) -> str:
    """The architecture a folded model has: ``"vgg16_bn"`` -> ``"vgg16"``."""
    return arch[:-3] if arch.endswith("_bn") else arch
