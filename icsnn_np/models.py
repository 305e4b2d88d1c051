"""The paper's networks, built by name: ``vgg16``, ``resnet20``, and the CPU-sized ``vgg_cpu``.

As in the paper (Sec. 4.1.1): no BatchNorm, no Dropout, AvgPool instead of MaxPool, ReLU
activations. Parameter names follow PyTorch ``state_dict`` conventions
(``features.0.weight``, ``classifier.0.weight``, ``layer1.0.conv1.weight``, ``fc.weight``).

The ``_bn`` variants (``vgg16_bn``, ``vgg_cpu_bn``, ``resnet20_bn``) add BatchNorm after every
conv, named as torchvision does (``features`` = conv, bn, relu, ...; ``bn1``/``bn2`` and
``shortcut.0``/``shortcut.1`` in ResNet blocks, ``bn1`` after the stem conv), for networks
imported from PyTorch (``imports.py``); ``batchnorm.fold_batchnorm`` turns them into the
plain ones before conversion.

    model = build_model("vgg_cpu", num_classes=10, seed=0)
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .batchnorm import BatchNorm2d
from .layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from .module import Module, Sequential


class BasicBlock(Module):
    """ResNet basic block without BatchNorm: relu(conv2(relu(conv1(x))) + shortcut(x)).

    The shortcut is the identity, or a 1x1 strided convolution (``shortcut.0``) when the
    stride or the number of channels changes (He et al. 2016, option B).

    ``bn=True`` adds BatchNorm after each conv (``bn1``, ``bn2``, ``shortcut.1``; the convs
    then have no bias, as in the usual CIFAR ResNets); ``batchnorm.fold_batchnorm`` turns
    such a block back into the plain one.
    """

    _MAIN = ("conv1", "bn1", "relu1", "conv2", "bn2")   # the residual branch, those present

    def __init__(self, in_channels, out_channels, stride=1, rng=None, dtype=np.float32, bn=False):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        c = self.children
        c["conv1"] = Conv2d(in_channels, out_channels, 3, stride, 1, bias=not bn, rng=rng, dtype=dtype)
        if bn:
            c["bn1"] = BatchNorm2d(out_channels, dtype=dtype)
        c["relu1"] = ReLU()
        c["conv2"] = Conv2d(out_channels, out_channels, 3, 1, 1, bias=not bn, rng=rng, dtype=dtype)
        if bn:
            c["bn2"] = BatchNorm2d(out_channels, dtype=dtype)
        # relu2 is listed before the shortcut so that, in children order, every ReLU follows
        # the weight layer that drives it (conversion relies on this; names are unaffected).
        c["relu2"] = ReLU()
        if stride != 1 or in_channels != out_channels:
            proj = [Conv2d(in_channels, out_channels, 1, stride, 0, bias=not bn, rng=rng, dtype=dtype)]
            if bn:
                proj.append(BatchNorm2d(out_channels, dtype=dtype))
            c["shortcut"] = Sequential(*proj)

    def shortcut(self, x):
        sc = self.children.get("shortcut")
        return x if sc is None else sc.forward(x)

    def forward(self, x):
        c = self.children
        h = x
        for name in self._MAIN:
            if name in c:
                h = c[name].forward(h)
        return c["relu2"].forward(h + self.shortcut(x))

    def backward(self, grad):
        """Through relu2, then the residual branch and the shortcut, gradients summed."""
        c = self.children
        g = c["relu2"].backward(grad)
        gx = g
        for name in reversed(self._MAIN):
            if name in c:
                gx = c[name].backward(gx)
        sc = c.get("shortcut")
        return gx + (g if sc is None else sc.backward(g))


# "A" is a 2x2 average pool. VGG16 as used for CIFAR in the conversion literature.
VGG_CFGS = {
    "vgg16": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512, "A"],
    # CPU-sized: 6 conv layers, trains to >75 % on CIFAR-10 on 2 cores in well under an hour.
    "vgg_cpu": [32, 32, "A", 64, 64, "A", 128, 128, "A"],
    # the benchmark network of the performance issue
    "vgg_bench": [64, 64, "A", 128, 128, "A", 256, 256, "A"],
    # VGG-16's layer sequence (13 conv layers in 5 stages, 3 linear layers) at a quarter of
    # its widths: depth, which accumulates conversion error, with 1/16 of the multiplies.
    "vgg16_cpu": [16, 16, "A", 32, 32, "A", 64, 64, 64, "A", 128, 128, 128, "A", 128, 128, 128, "A"],
}
VGG_HIDDEN = {"vgg16": (4096, 4096), "vgg_cpu": (), "vgg_bench": (), "vgg16_cpu": (1024, 1024)}


def vgg(cfg, num_classes=10, hidden=(), in_channels=3, image_size=32, seed=0, dtype=np.float32,
        bn=False):
    """A VGG: 3x3 conv + ReLU blocks from ``cfg`` ("A" = 2x2 AvgPool), then a linear head.

    ``features`` holds the conv part, ``classifier`` the Linear (+ ReLU) head. ``bn=True``
    puts a BatchNorm2d between each conv and its ReLU (torchvision's ``vgg*_bn``).
    """
    rng = np.random.default_rng(seed)
    feats, c, size = [], in_channels, image_size
    for v in cfg:
        if v == "A":
            feats.append(AvgPool2d(2))
            size //= 2
        else:
            feats.append(Conv2d(c, v, 3, 1, 1, rng=rng, dtype=dtype))
            if bn:
                feats.append(BatchNorm2d(v, dtype=dtype))
            feats.append(ReLU())
            c = v
    # Flatten sits between features and classifier (as torchvision's forward does), so
    # the Linear layers are classifier.0, classifier.2, ... exactly as in torchvision.
    head, width = [], c * size * size
    for h in hidden:
        head += [Linear(width, h, rng=rng, dtype=dtype), ReLU()]
        width = h
    head.append(Linear(width, num_classes, rng=rng, dtype=dtype))
    return Sequential(OrderedDict(features=Sequential(*feats), flatten=Flatten(),
                                  classifier=Sequential(*head)))


def resnet20(num_classes=10, seed=0, dtype=np.float32, widths=(16, 32, 64), blocks=3, bn=False):
    """CIFAR ResNet-20 (He et al. 2016): conv, 3 stages x 3 basic blocks, global avg pool, fc.

    BatchNorm removed as in the paper; projection (1x1 conv) shortcuts where shapes change.
    ``bn=True`` keeps BatchNorm (``bn1`` after the stem conv, see BasicBlock), convs without bias.
    """
    rng = np.random.default_rng(seed)
    layers = OrderedDict(conv1=Conv2d(3, widths[0], 3, 1, 1, bias=not bn, rng=rng, dtype=dtype))
    if bn:
        layers["bn1"] = BatchNorm2d(widths[0], dtype=dtype)
    layers["relu"] = ReLU()
    c = widths[0]
    for s, w in enumerate(widths):
        stage = []
        for b in range(blocks):
            stride = 2 if (s > 0 and b == 0) else 1
            stage.append(BasicBlock(c, w, stride, rng=rng, dtype=dtype, bn=bn))
            c = w
        layers[f"layer{s + 1}"] = Sequential(*stage)
    layers["avgpool"] = AvgPool2d(32 // 2 ** (len(widths) - 1))
    layers["flatten"] = Flatten()
    layers["fc"] = Linear(c, num_classes, rng=rng, dtype=dtype)
    return Sequential(layers)


def fixup_init(model, m: int = 2):
    """Fixup-style initialisation of a BatchNorm-free ResNet, in place (Zhang, Dauphin & Ma,
    "Fixup initialization: residual learning without normalization", ICLR 2019, Sec. 3).

    Without BatchNorm every residual branch adds its variance to the signal, so at He
    initialisation the output of ResNet-20 grows with depth and training diverges (measured:
    float32 overflow in the first steps at lr 0.05). Fixup's rules 1-2: the last conv of each
    branch starts at zero (every block is the identity, plus its shortcut, at the start), the
    other ``m - 1`` convs of a branch are scaled by L^(-1/(2m-2)) (L = number of residual
    blocks), and the classification layer starts at zero. Fixup's scalar multipliers and
    biases (rule 3) are left out: our convs have per-channel biases. Returns the model.
    """
    blocks = [mod for _, mod in model.named_modules() if isinstance(mod, BasicBlock)]
    if not blocks:
        raise ValueError("fixup_init needs a residual network (no BasicBlock found)")
    scale = len(blocks) ** (-1.0 / (2 * m - 2))
    for b in blocks:
        b.children["conv1"].params["weight"] *= scale
        b.children["conv2"].params["weight"][...] = 0
    last = [mod for _, mod in model.named_modules() if isinstance(mod, Linear)][-1]
    for k in last.params:
        last.params[k][...] = 0
    return model


INITS = ("he", "fixup")

MODELS = {
    "vgg16": lambda **kw: vgg(VGG_CFGS["vgg16"], hidden=VGG_HIDDEN["vgg16"], **kw),
    "vgg_cpu": lambda **kw: vgg(VGG_CFGS["vgg_cpu"], **kw),
    "vgg_bench": lambda **kw: vgg(VGG_CFGS["vgg_bench"], **kw),
    "vgg16_cpu": lambda **kw: vgg(VGG_CFGS["vgg16_cpu"], hidden=VGG_HIDDEN["vgg16_cpu"], **kw),
    "resnet20": lambda **kw: resnet20(**kw),
    "vgg16_bn": lambda **kw: vgg(VGG_CFGS["vgg16"], hidden=VGG_HIDDEN["vgg16"], bn=True, **kw),
    "vgg_cpu_bn": lambda **kw: vgg(VGG_CFGS["vgg_cpu"], bn=True, **kw),
    "resnet20_bn": lambda **kw: resnet20(bn=True, **kw),
}


def build_model(name: str, num_classes: int = 10, seed: int = 0, dtype=np.float32):
    """Build a model by name; an unknown name raises ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, seed=seed, dtype=dtype)
