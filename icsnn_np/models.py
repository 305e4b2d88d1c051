"""The paper's networks by name (``build_model("vgg_cpu")``): ``vgg16``, ``resnet20`` and
the CPU-sized VGGs. As in the paper (Sec. 4.1.1): no BatchNorm, no Dropout, AvgPool instead
of MaxPool, ReLU; parameters named as PyTorch's ``state_dict`` (``features.0.weight``)."""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import numpy as np

from .layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from .module import Module, Sequential


class BasicBlock(Module):
    """ResNet basic block: relu2(branch(x) + shortcut(x)), branch = conv1, relu1, conv2; the
    shortcut is the identity, or a 1x1 strided conv where the shape changes (He et al. 2016)."""

    def __init__(self, in_channels, out_channels, stride=1, rng=None, dtype=np.float32, bias=True):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        c = self.children
        c["conv1"] = Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias, rng=rng, dtype=dtype)
        c["relu1"] = ReLU()
        c["conv2"] = Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias, rng=rng, dtype=dtype)
        c["relu2"] = ReLU()      # before the shortcut: each ReLU follows its weight layer (Alg. 1)
        if stride != 1 or in_channels != out_channels:
            c["shortcut"] = Sequential(Conv2d(in_channels, out_channels, 1, stride, 0, bias=bias,
                                              rng=rng, dtype=dtype))

    def branch(self):
        """The residual branch: every child listed before relu2, in order."""
        names = list(self.children)
        return [self.children[n] for n in names[:names.index("relu2")]]

    def forward(self, x):
        h = x
        for m in self.branch():
            h = m.forward(h)
        sc = self.children.get("shortcut")
        return self.children["relu2"].forward(h + (x if sc is None else sc.forward(x)))

    def backward(self, grad):
        """Through relu2, then the branch and the shortcut; their input gradients add up."""
        g = self.children["relu2"].backward(grad)
        gx = g
        for m in reversed(self.branch()):
            gx = m.backward(gx)
        sc = self.children.get("shortcut")
        return gx + (g if sc is None else sc.backward(g))


VGG_CFGS = {         # "A": a 2x2 average pool; vgg16 as the conversion literature uses it on CIFAR
    "vgg16": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512, "A"],
    # CPU-sized: 6 conv layers, trains to 85 % on CIFAR-10 on 2 cores in under an hour
    "vgg_cpu": [32, 32, "A", 64, 64, "A", 128, 128, "A"],
    # VGG-16's layer sequence at a quarter of its widths: its depth with 1/16 of the multiplies
    "vgg16_cpu": [16, 16, "A", 32, 32, "A", 64, 64, 64, "A", 128, 128, 128, "A", 128, 128, 128, "A"],
}
VGG_HIDDEN = {"vgg16": (4096, 4096), "vgg_cpu": (), "vgg16_cpu": (1024, 1024)}


def vgg(cfg, num_classes=10, hidden=(), in_channels=3, image_size=32, seed=0, dtype=np.float32):
    """3x3 conv + ReLU blocks from ``cfg`` ("A" = 2x2 AvgPool) in ``features``, a Flatten,
    then the Linear (+ ReLU) head in ``classifier`` (torchvision's names: classifier.0, .2)."""
    rng = np.random.default_rng(seed)
    feats, c, size = [], in_channels, image_size
    for v in cfg:
        if v == "A":
            feats.append(AvgPool2d(2))
            size //= 2
        else:
            feats += [Conv2d(c, v, 3, 1, 1, rng=rng, dtype=dtype), ReLU()]
            c = v
    head, width = [], c * size * size
    for h in hidden:
        head += [Linear(width, h, rng=rng, dtype=dtype), ReLU()]
        width = h
    head.append(Linear(width, num_classes, rng=rng, dtype=dtype))
    return Sequential(OrderedDict(features=Sequential(*feats), flatten=Flatten(),
                                  classifier=Sequential(*head)))


def resnet20(num_classes=10, seed=0, dtype=np.float32, widths=(16, 32, 64), blocks=3, bias=True):
    """CIFAR ResNet-20 (He et al. 2016): conv, 3 stages x 3 basic blocks, global avg pool, fc."""
    rng, c = np.random.default_rng(seed), widths[0]
    layers = OrderedDict(conv1=Conv2d(3, c, 3, 1, 1, bias=bias, rng=rng, dtype=dtype), relu=ReLU())
    for s, w in enumerate(widths):
        stage = [BasicBlock(c if b == 0 else w, w, 2 if (s > 0 and b == 0) else 1, rng=rng,
                            dtype=dtype, bias=bias) for b in range(blocks)]
        layers[f"layer{s + 1}"], c = Sequential(*stage), w
    layers.update(avgpool=AvgPool2d(32 // 2 ** (len(widths) - 1)), flatten=Flatten(),
                  fc=Linear(c, num_classes, rng=rng, dtype=dtype))
    return Sequential(layers)


MODELS = {**{name: partial(vgg, cfg, hidden=VGG_HIDDEN[name]) for name, cfg in VGG_CFGS.items()},
          "resnet20": resnet20}


def build_model(name: str, num_classes: int = 10, seed: int = 0, dtype=np.float32):
    """Build a model by name; an unknown name raises ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, seed=seed, dtype=dtype)
