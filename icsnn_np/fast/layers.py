"""Fast twins of the teaching layers, and ``accelerate``, which swaps them into a network.

A twin (twin.py) is an object of a subclass that shares the original's attributes (the
*same* ``params`` and ``grads`` dicts, the same V_th and v(0)), so training a twin trains
the original and a checkpoint saved from the original holds what the twin learned. Only
``forward``/``backward`` differ: they keep channels-last memory order, spread their work
over the CPU threads and can write into a reused output buffer (``out=``).
"""
from __future__ import annotations

import numpy as np

from ..backend import xp_of
from ..layers import AvgPool2d, Conv2d, ReLU
from ..module import Sequential, rebuild
from ..neurons import IFNode
from .cache import l2_times
from .conv import FastConv2d
from .neurons import FastIFNode
from .nhwc import empty_channels_last, is_channels_last, reusable
from .threads import parallel_for
from .twin import Twin


# Output elements per tile of the forward pooling loop: an eighth of the L2 cache (cache.py),
# so that the k*k passes over a tile of the output hit the cache (a thread's whole slice
# would come from memory at every pass: about 4 % of the SNN engine's time on vgg_cpu, AMD
# EPYC). A number here overrides it (tests).
POOL_TILE_ELEMENTS = None


def pool_tile(a) -> int:
    """Images (rows of ``a``, the pooled output) per tile of the pooling loop (all on a GPU)."""
    if xp_of(a) is not np:
        return max(1, a.shape[0])
    n = POOL_TILE_ELEMENTS or l2_times(1, 1 << 20) // (8 * a.itemsize)
    return max(1, n // max(1, a[0].size))


def split(fn, a):
    """fn(n0, n1) over slices of a's first axis: on the CPU threads (NumPy), else at once."""
    if xp_of(a) is np:
        parallel_for(fn, a.shape[0], a.size)
    else:
        fn(0, a.shape[0])


class FastReLU(Twin, ReLU):
    """max(x, 0) in x's memory order, over threads, into preallocated arrays.

    ``fused`` (set by ``fuse_relu_masks``): the layer after it applies the mask (x > 0) in its
    own backward, so this one keeps no mask and its backward passes the gradient on."""

    fused = False

    def forward(self, x):
        xp = xp_of(x)
        out = xp.empty_like(x)                               # keeps the memory order
        keep = self.training and not self.fused
        mask = self._mask = xp.empty_like(x, dtype=bool) if keep else None

        def relu(n0, n1):
            xp.maximum(x[n0:n1], 0, out=out[n0:n1])
            if mask is not None:
                xp.greater(x[n0:n1], 0, out=mask[n0:n1])

        split(relu, x)
        if self.record is not None:
            self.record.append(out)
        return out

    def backward(self, grad):
        if self.fused:
            return grad                  # the next layer's backward multiplied by (x > 0)
        xp = xp_of(grad)
        dx = xp.empty_like(grad)
        split(lambda n0, n1: xp.multiply(grad[n0:n1], self._mask[n0:n1], out=dx[n0:n1]), grad)
        return dx


class FastAvgPool2d(Twin, AvgPool2d):
    """Average pooling in x's memory order, over threads, into a reusable output."""

    _channels_last = False
    relu_input = False          # its input is a ReLU's output: backward applies (x > 0)

    def forward(self, x, out=None):
        """x: (N, C, H, W) -> (N, C, Ho, Wo); ``out`` as for FastConv2d."""
        Ho, Wo = self.check_input(x)
        xp = xp_of(x)
        k, s = self.kernel_size, self.stride
        first = x[:, :, 0:s * Ho:s, 0:s * Wo:s]
        out = reusable(out, first.shape, x.dtype) if is_channels_last(x) else None
        if out is None:
            out = xp.empty_like(first)                   # keeps the memory order

        tile = pool_tile(out)

        def pool(n0, n1):
            for a in range(n0, n1, tile):
                b = min(n1, a + tile)
                o, xs = out[a:b], x[a:b]
                o[...] = xs[:, :, 0:s * Ho:s, 0:s * Wo:s]
                for i in range(k):
                    for j in range(k):
                        if i or j:
                            o += xs[:, :, i:i + s * Ho:s, j:j + s * Wo:s]
                o *= 1.0 / (k * k)

        split(pool, x)
        if self.training:
            self._shape, self._channels_last = x.shape, is_channels_last(x)
            self._input = x if self.relu_input else None
        return out

    def backward(self, grad):
        xp = xp_of(grad)
        k, s = self.kernel_size, self.stride
        Ho, Wo = grad.shape[2:]
        g = grad * (1.0 / (k * k))
        # dx in the forward input's memory order, so the conv before gets what it wrote
        dx = (empty_channels_last(xp, self._shape, g.dtype) if self._channels_last
              else xp.empty(self._shape, dtype=g.dtype))
        tiles = s == k and self._shape[2] == k * Ho and self._shape[3] == k * Wo

        def spread(n0, n1):
            d, gs = dx[n0:n1], g[n0:n1]
            if tiles:
                # non-overlapping windows that tile the input: each offset written once
                for i in range(k):
                    for j in range(k):
                        d[:, :, i::s, j::s] = gs
            else:
                d[...] = 0
                for i in range(k):
                    for j in range(k):
                        d[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += gs
            if self.relu_input:          # the ReLU before it: d * (x > 0), while d is in cache
                xp.multiply(d, self._input[n0:n1] > 0, out=d)

        split(spread, dx)
        return dx


# the teaching class -> its fast twin (checked in this order: subclasses first)
TWINS = ((IFNode, FastIFNode), (Conv2d, FastConv2d), (AvgPool2d, FastAvgPool2d), (ReLU, FastReLU))


def twin(m):
    """The fast twin of the leaf module ``m`` (sharing its state), or ``m`` itself."""
    for cls, fast in TWINS:
        if type(m) is cls:            # a subclass it does not know (QCFS) runs as itself
            return fast.of(m)
    return m


def accelerate(tree, algo: str = "auto"):
    """A copy of the module tree with every layer that has a fast twin replaced by it.

    Parameters are shared, not copied. ``algo="im2col"`` keeps Winograd out of the convs.
    """
    def leaf(m, _path):
        t = twin(m)
        if isinstance(t, FastConv2d):
            t.algo = algo
        return t

    return fuse_relu_masks(rebuild(tree, leaf))


def fuse_relu_masks(tree):
    """Where a ReLU feeds a conv or an average pool directly (next in one Sequential), that
    layer's backward multiplies its dx by (x > 0) block by block, while dx is in cache, and
    the ReLU's backward passes the gradient on: no mask kept, no extra pass over memory, no
    new dx. The same products as ``grad * mask``, so the same gradients bit for bit."""
    for _, m in tree.named_modules():
        if isinstance(m, Sequential):
            kids = list(m.children.values())
            for a, b in zip(kids, kids[1:]):
                if type(a) is FastReLU and type(b) in (FastConv2d, FastAvgPool2d):
                    a.fused = b.relu_input = True
    return tree
