"""What a model accepts, checked where data enters an evaluation: images of its size and
channels, labels of its classes, and outputs that stay finite.

    check_images(model, x, "the test batch (x_test)")     # finite float (N, C, H, W) it fits
    check_labels(y, len(x), "the test labels", model_classes(model))
    check_finite_output(logits, x, "the test batch")      # no overflow inside the network

A network built for 32x32 CIFAR images that gets 64x64 ones would fail deep inside, at its
first linear layer ("Linear expects (N, 2048)"); the core's ``checks.check_image_size`` says
it at the door, in terms of images, by shape arithmetic over the layers (no run).
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host, xp_of
from ..checks import check_batch
from ..layers import Linear
from ..models import BasicBlock
from ..neurons import IFNode


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


def check_images(model, x, what: str = "the image batch"):
    """``x`` is a finite float batch (N, C, H, W) of the channels and image size ``model``
    was built for; a ValueError in those terms otherwise (the core's check). Returns x."""
    return check_batch(x, what, model)


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
