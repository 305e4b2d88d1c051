"""A Winograd conv and the IF node after it, block of images by block (the SNN engine, CPU).

Apart, a chunk's conv writes the currents of Tc*N images to memory (tens of MB, more than
the caches hold) and the IF node reads them back. Together, each block of images of one
time step is convolved (``winograd.conv3x3_block``) and integrated (``FastIFNode.integrate``)
at once, while its current is still in cache: about 5 % faster on vgg_cpu (measured
alternately in one process, docs/performance.md). The threads split the images; each runs
every step of its own, in order, as the IF node needs.

The blocks hold the conv's own number of images, nb (the last one of a step fewer when nb
does not divide N). The IF operations are those of the node alone; each image's tiles are
rows of the block's GEMMs, and OpenBLAS computes a row the same way whatever rows stand
beside it (measured: the same bits down to one image per block, except a block of a single
tile, a one-row product it computes another way, so blocks keep at least MIN_TILES). The
conv alone relies on the same: its blocks of Tc*N rows mix two steps wherever nb does not
divide N. So the spikes are the same bit for bit (tests/fast/test_fused.py).
"""
from __future__ import annotations

import numpy as np

from . import winograd
from .conv import FastConv2d
from .neurons import FastIFNode
from .nhwc import empty_channels_last, is_channels_last, reusable
from .threads import parallel_for

MIN_TILES = 4


def fused_block(conv, node, x) -> int:
    """Images per block when ``conv`` then ``node`` can run fused on the chunk ``x``
    (Tc*N, C, H, W), else 0: a NumPy Winograd conv on a channels-last input, whose blocks
    (the last of a step included) hold at least MIN_TILES tiles."""
    if not (type(conv) is FastConv2d and type(node) is FastIFNode and type(x) is np.ndarray
            and not conv.training and conv.uses_winograd() and is_channels_last(x)
            and node.n and x.shape[0] == node.chunk * node.n):
        return 0
    _, C, H, W = x.shape
    nb = winograd.block_images(H, W, C, x.itemsize, x.shape[0], gpu=False)
    per_image = -(-H // winograd.M_OUT) * -(-W // winograd.M_OUT)
    smallest = node.n % nb or nb
    return nb if min(nb, smallest) * per_image >= MIN_TILES else 0


def conv_if(conv: FastConv2d, node: FastIFNode, x, nb: int, out=None):
    """node.forward(conv.forward(x)) for a chunk x (Tc*N, C, H, W) in blocks of ``nb``
    images (``fused_block``): spikes x V_th (Tc*N, O, H, W), channels-last, written into
    ``out`` when it fits."""
    Tc, N = node.chunk, node.n
    _, C, H, W = x.shape
    O = conv.out_channels
    xh = x.transpose(0, 2, 3, 1)                                      # (Tc*N, H, W, C)
    U = conv._winograd_weights()
    dtype = np.result_type(x.dtype, U.dtype)
    U, xh = U.astype(dtype, copy=False), xh.astype(dtype, copy=False)
    bias = conv.params.get("bias")
    out = reusable(out, (Tc * N, O, H, W), dtype)
    if out is None:
        out = empty_channels_last(np, (Tc * N, O, H, W), dtype)
    node.ensure_state(out[:N])
    th, t0 = node.v_th_dev, node.t
    per_image = th.ndim == node.v.ndim and th.shape[0] == N

    def work(b0, b1):
        """Every step of the images of blocks b0..b1, in step order."""
        cur = np.empty((nb, H, W, O), dtype)                          # one block's current
        fired = np.empty((nb, H, W, O), bool).transpose(0, 3, 1, 2)
        for k in range(Tc):
            for b in range(b0, b1):
                j0, j1 = b * nb, min(N, b * nb + nb)
                n, r0 = j1 - j0, k * N + j0
                ws = winograd.workspace(np, n, H, W, C, O, dtype)    # kept per thread and n
                c = cur[:n]
                winograd.conv3x3_block(xh[r0:r0 + n], U, c, ws)
                if bias is not None:
                    c += bias
                node.integrate(j0, j1, c.transpose(0, 3, 1, 2), fired[:n], out[r0:r0 + n],
                               th[j0:j1] if per_image else th, t0 + k + 1)

    parallel_for(work, -(-N // nb), x.size * 9 * max(1, O // 8), blas=True)
    node.t += Tc
    return out
