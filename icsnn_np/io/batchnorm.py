"""BatchNorm2d with explicit backprop, and folding it into the preceding convolution.

The paper trains its ANNs without BatchNorm (Sec. 4.1.1), but most networks people bring
from PyTorch have it. A BN layer after a conv is, in eval mode, a per-channel affine map

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias  =  s * x + (bias - s * running_mean)

with s = weight / sqrt(running_var + eps), so it folds into the conv before it:

    W' = W * s  (per output channel),   b' = (b - running_mean) * s + bias

``fold_batchnorm(model)`` does that for every conv + BN pair and returns the plain network
(``vgg16_bn`` -> the ``vgg16`` structure, names included), which ``convert.convert`` takes
as is. Only eval-mode BN folds: with batch statistics the map depends on the batch.

The ``_bn`` models (``vgg16_bn``, ``vgg_cpu_bn``, ``resnet20_bn``) are the paper's networks
with a BatchNorm after every conv, named as torchvision does, for networks imported from
PyTorch (imports.py); ``build_any(name)`` builds them and the plain ones by name.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from ..backend import xp_of
from ..layers import Conv2d
from ..models import MODELS, VGG_CFGS, VGG_HIDDEN, BasicBlock, resnet20, vgg
from ..module import Module, Sequential


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


# --------------------------------------------------------------------------- BN models
def _with_bn(seq: Sequential, dtype) -> Sequential:
    """``seq`` with a BatchNorm2d after every Conv2d, children renumbered (torchvision's
    ``features``: conv, bn, relu, ...)."""
    layers = []
    for m in seq:
        layers.append(m)
        if isinstance(m, Conv2d):
            layers.append(BatchNorm2d(m.out_channels, dtype=dtype))
    return Sequential(*layers)


def bn_block(in_channels, out_channels, stride=1, rng=None, dtype=np.float32) -> BasicBlock:
    """A BasicBlock with ``bn1``, ``bn2`` (and ``shortcut.1``) after its convs, which have no
    bias (the usual CIFAR ResNets); ``fold_batchnorm`` turns it back into the plain block."""
    return _add_bn(BasicBlock(in_channels, out_channels, stride, rng=rng, dtype=dtype, bias=False),
                   dtype)


def _add_bn(b: BasicBlock, dtype) -> BasicBlock:
    c, width = b.children, b.children["conv1"].out_channels
    new = OrderedDict(conv1=c["conv1"], bn1=BatchNorm2d(width, dtype=dtype), relu1=c["relu1"],
                      conv2=c["conv2"], bn2=BatchNorm2d(width, dtype=dtype), relu2=c["relu2"])
    if "shortcut" in c:
        new["shortcut"] = Sequential(c["shortcut"][0], BatchNorm2d(width, dtype=dtype))
    b.children = new
    return b


def vgg_bn(cfg, hidden=(), dtype=np.float32, **kw):
    """A VGG with BatchNorm between each conv and its ReLU (torchvision's ``vgg*_bn``)."""
    model = vgg(cfg, hidden=hidden, dtype=dtype, **kw)
    model.children["features"] = _with_bn(model.children["features"], dtype)
    return model


def resnet20_bn(dtype=np.float32, **kw):
    """ResNet-20 with BatchNorm after every conv (``bn1`` after the stem), convs without bias."""
    model = resnet20(dtype=dtype, bias=False, **kw)
    c = model.children
    for _, m in model.named_modules():
        if isinstance(m, BasicBlock):
            _add_bn(m, dtype)
    model.children = OrderedDict([("conv1", c["conv1"]), ("bn1", BatchNorm2d(c["conv1"].out_channels, dtype=dtype))]
                                 + [(k, v) for k, v in c.items() if k != "conv1"])
    return model


BN_MODELS = {
    "vgg16_bn": lambda **kw: vgg_bn(VGG_CFGS["vgg16"], hidden=VGG_HIDDEN["vgg16"], **kw),
    "vgg_cpu_bn": lambda **kw: vgg_bn(VGG_CFGS["vgg_cpu"], **kw),
    "resnet20_bn": lambda **kw: resnet20_bn(**kw),
}
ALL_MODELS = {**MODELS, **BN_MODELS}


def build_any(name: str, num_classes: int = 10, seed: int = 0, dtype=np.float32):
    """A model by name, the paper's or a ``_bn`` one; an unknown name lists the known ones."""
    if name not in ALL_MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(ALL_MODELS))}")
    return ALL_MODELS[name](num_classes=num_classes, seed=seed, dtype=dtype)
