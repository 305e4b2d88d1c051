"""What a model accepts, checked where data enters an evaluation: images of its size and
channels, labels of its classes, and outputs that stay finite.

    check_images(model, x, "the test batch (x_test)")     # finite float (N, C, H, W) it fits
    check_labels(y, len(x), "the test labels", model_classes(model))
    check_finite_output(logits, x, "the test batch")      # no overflow inside the network

A network built for 32x32 CIFAR images that gets 64x64 ones fails deep inside, at its
first linear layer ("Linear expects (N, 2048)"); here it is said at the door, in terms of
images. The size a model was built for is found by shape arithmetic over its layers (each
layer's ``out_size``), without running it.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host, xp_of
from ..checks import check_batch
from ..layers import Conv2d, Flatten, Linear
from ..models import BasicBlock
from ..neurons import IFNode

MAX_SIDE = 1024                 # the largest image side tried when naming the size that fits


def leaves(module):
    """The modules that act on the data, in execution order (a residual block: its branch;
    its shortcut only joins it and does not change the shape that comes out)."""
    if isinstance(module, BasicBlock):
        for m in module.branch():
            yield from leaves(m)
    elif module.children:
        for m in module.children.values():
            yield from leaves(m)
    else:
        yield module


def _head(model):
    """(channels of the first conv or None, features the first Linear after a Flatten takes)."""
    first_conv, flat = None, False
    for m in leaves(model):
        if isinstance(m, Conv2d) and first_conv is None:
            first_conv = m.in_channels
        flat = flat or isinstance(m, Flatten)
        if isinstance(m, Linear) and flat:
            return first_conv, m.in_features
    return first_conv, None


def flat_features(model, c: int, h: int, w: int):
    """The feature count at the model's Flatten for (c, h, w) images, or None where the
    images do not get there (a window larger than the feature map)."""
    for m in leaves(model):
        if isinstance(m, Flatten):
            return c * h * w
        if hasattr(m, "out_size"):
            h, w = m.out_size(h, w)
            if h < 1 or w < 1:
                return None
        if isinstance(m, Conv2d):
            c = m.out_channels
    return None


def built_for(model, c: int):
    """The square image side the model's first linear layer was sized for, or None."""
    _, features = _head(model)
    if features is None:
        return None
    return next((s for s in range(1, MAX_SIDE + 1) if flat_features(model, c, s, s) == features), None)


def check_images(model, x, what: str = "the image batch"):
    """``x`` is a finite float batch (N, C, H, W) of the channels and image size ``model``
    was built for; a ValueError in those terms otherwise. Returns x."""
    return check_image_size(model, check_batch(x, what), what)


def check_image_size(model, x, what: str = "the image batch"):
    """The channels and image size of the batch (N, C, H, W) ``x`` are those ``model`` was
    built for (shapes only: no look at the values, so no device sync). Returns x."""
    channels, features = _head(model)
    _, c, h, w = x.shape
    if channels is not None and c != channels:
        raise ValueError(f"{what}: images with {c} channel{'s' * (c != 1)}, but the model takes "
                         f"{channels} (its first convolution's input channels)")
    if features is not None and flat_features(model, c, h, w) != features:
        side = built_for(model, c)
        size = (f"{side}\u00d7{side} images" if side else
                f"another image size ({features} features at its first linear layer)")
        raise ValueError(f"{what}: {h}\u00d7{w} images, but the model was built for {size}")
    return x


def model_classes(model):
    """The number of classes ``model`` scores: its last Linear's outputs (None without one)."""
    last = [m for m in leaves(model) if isinstance(m, Linear)]
    return last[-1].out_features if last else None


def check_labels(y, n: int, what: str = "the labels", classes: int | None = None):
    """One integer label per image, each in [0, classes) when ``classes`` is given."""
    y = np.asarray(to_host(y) if hasattr(y, "shape") else y)
    if y.ndim != 1 or len(y) != n or (len(y) and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"{what}: expected {n} integer labels, got {y.dtype} {y.shape}")
    if classes is not None and len(y) and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{what}: labels must lie in [0, {classes}) for a {classes}-class "
                         f"model, found {int(y.min())} .. {int(y.max())}")
    return y


def check_first_currents(snn, x, what: str = "the test batch"):
    """The input currents of ``snn``'s first IF layer on ``x`` are finite: the layers before
    it run once on the batch (one convolution, not T steps), so inputs that overflow float32
    there (images x 1e38) are refused instead of spiking on inf forever."""
    h = x
    with np.errstate(over="ignore", invalid="ignore"):    # an overflow is refused below, in one line
        for m in leaves(snn.tree):
            if isinstance(m, IFNode):
                break
            h = m.forward(h)
    return check_finite_output(h, x, what, "the SNN's first input currents")


def check_finite_output(out, x, what: str = "the image batch", who: str = "the ANN's outputs"):
    """``out`` (what the network made of ``x``) is finite: inputs within float32's range can
    still overflow inside the network (images x 1e38), which would otherwise end as an
    accuracy with nothing but RuntimeWarnings. One sync point per batch."""
    xp = xp_of(out)
    if not bool(xp.isfinite(out).all()):                                   # sync point
        top = float(to_host(xp_of(x).abs(x).max()))
        raise ValueError(f"{who} on {what} contain NaN or inf: inputs up to |x| = {top:.3g} "
                         f"overflow float32 inside the network (are the images normalised?)")
    return out
