"""3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering, F(4x4, 3x3).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). A 4x4 block
of outputs of a 3x3 filter needs a 6x6 tile d of the input; with fixed matrices B, G, A
(built from six interpolation points, below)

    Y = A^T [ (G g G^T)  (.)  (B^T d B) ] A                                   (Lavin & Gray, Eq. 10)

where (.) is the elementwise product over the 6x6 "Winograd domain". Summed over input
channels, that product is, for each of the 36 Winograd positions, an ordinary matrix
product (tiles x C) @ (C x O). So a conv becomes 36 GEMMs with 36*C*O multiplies per tile
of 16 outputs, against 16*9*C*O for im2col + GEMM: 4x fewer, and the transforms of input
and output (small GEMMs with 6x6 and 4x6 matrices, applied along one axis at a time) cost
O(C) and O(O) per tile. On this project's layers (C >= 64) it is about 2x faster than
im2col + GEMM (results/bench.md).

The price is rounding: the transforms mix values with weights up to 8, so results differ
from the direct sum by ~2e-6 of the output's magnitude in float32 (im2col + GEMM: ~1e-7;
tested against the definition). In an SNN such a difference moves a membrane potential
that sits within it of the threshold to the other side, as any change of summation order
can; the fast engine's ``algo="im2col"`` gives the direct sum's rounding.

Layout: channels-last throughout, like the fast im2col path (conv.py). The input is gathered
into 6x6 tiles that overlap by 2 (the stride of tiles is 4), block of images by block of
images, so that a block's buffers stay in cache; it is first copied into a reused buffer
whose border stays zero (the padding), as in ``nhwc.im2col_nhwc``.
"""
from __future__ import annotations

import threading

import numpy as np

from ..backend import xp_of
from .cache import l2_times
from .threads import parallel_for

# F(4x4, 3x3) from the Toom-Cook construction with interpolation points 0, 1, -1, 1/2, -2
# and infinity; B^T's rows scaled to small integers (G takes the inverse scale). Lavin & Gray
# use 0, +-1, +-2, inf; replacing 2 by 1/2 keeps the Winograd-domain values smaller, which
# cut the float32 error by ~1.4x in our measurement (2.7e-6 -> 1.9e-6 of the largest output
# on spike-like inputs, 128 channels); Barabasz et al., "Error analysis and improving the
# accuracy of Winograd convolution" (ACM TOMS 2020) study such choices.
B_T = np.array([[2, -3, -4, 3, 2, 0],
                [0, -2, 1, 5, 2, 0],
                [0, -2, 5, -1, -2, 0],
                [0, 2, 1, -2, -1, 0],
                [0, 1, -2, -1, 2, 0],
                [0, 2, -3, -4, 3, 2]], dtype=np.float64)
G = np.array([[1 / 2, 0, 0],
              [1 / 6, 1 / 6, 1 / 6],
              [1 / 6, -1 / 6, 1 / 6],
              [16 / 15, 8 / 15, 4 / 15],
              [1 / 30, -1 / 15, 2 / 15],
              [0, 0, 1 / 2]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 1 / 2, -2, 0],
                [0, 1, 1, 1 / 4, 4, 0],
                [0, 1, -1, 1 / 8, -8, 1]], dtype=np.float64)
M_OUT, TILE = 4, 6          # outputs per tile side, input tile side (M_OUT + 3 - 1)

# Bytes of one block's gathered input tiles: a core's L2 cache, read from the machine
# (cache.py; 1 MB where unknown). On an AMD EPYC with 1 MB of L2, the vgg_cpu SNN ran 14 %
# faster with these blocks than with 2 x L2 (in one process, alternately), once the tiles
# were gathered in four copies instead of 36; with the 36 copies (and their Python calls
# under the GIL), 1-5 MB had been within a few %. A number here overrides it (tests).
BLOCK_BYTES = None


def block_bytes() -> int:
    """BLOCK_BYTES, or the L2 cache of this CPU (1 MB where unknown)."""
    return BLOCK_BYTES or l2_times(1, 1 << 20)


def eligible(kernel_size: int, stride: int, padding: int) -> bool:
    """The convolutions this module computes: 3x3, stride 1, padding 1 ('same')."""
    return kernel_size == 3 and stride == 1 and padding == 1


# K[(a, b), (i, j)] = G[a, i] G[b, j]: G g G^T of a flattened 3x3 g is K @ g.ravel()
K_G = np.kron(G, G)                                               # (36, 9)
_ON_DEVICE: dict = {}      # (array module, name, dtype) -> K_G or K_G.T there, copied once


def _k_g(xp, dtype, transposed=False):
    """K_G (or K_G.T) as ``dtype`` on xp's device: copied there once, not at every call (the
    SNN engine transforms the weights once per time chunk on a GPU)."""
    key = (xp.__name__, transposed, np.dtype(dtype).str)
    k = _ON_DEVICE.get(key)
    if k is None:
        k = _ON_DEVICE[key] = xp.asarray((K_G.T if transposed else K_G).astype(dtype))
    return k


def transform_weights(w, xp=None):
    """U = G g G^T for every (output, input) channel pair: (O, C, 3, 3) -> (36, C, O).

    One GEMM (36 x 9) @ (9 x C*O) in the weights' dtype, written straight in U's layout.
    """
    xp = xp or xp_of(w)
    O, C = w.shape[:2]
    wt = xp.ascontiguousarray(w.reshape(O, C, 9).transpose(2, 1, 0)).reshape(9, C * O)
    return (_k_g(xp, w.dtype) @ wt).reshape(TILE * TILE, C, O)


def weight_grad(dU):
    """The adjoint of ``transform_weights``: dL/dg = G^T dL/dU G, (36, C, O) -> (O, C, 3, 3)."""
    xp = xp_of(dU)
    _, C, O = dU.shape
    dw = _k_g(xp, dU.dtype, transposed=True) @ dU.reshape(TILE * TILE, C * O)   # (9, C*O)
    return dw.reshape(3, 3, C, O).transpose(3, 2, 0, 1)


def block_images(H: int, W: int, C: int, itemsize: int, n: int, gpu: bool) -> int:
    """Images per block: a power of two near ``block_bytes()`` of tiles (CPU), all (GPU)."""
    if gpu:
        return n
    th, tw = -(-H // M_OUT), -(-W // M_OUT)
    nb = max(1, block_bytes() // (TILE * TILE * th * tw * C * itemsize))
    return 1 << (nb.bit_length() - 1)


class Workspace:
    """One block's buffers, reused from block to block (one per thread and layer shape)."""

    def __init__(self, xp, nb, H, W, C, O, dtype):
        th, tw = -(-H // M_OUT), -(-W // M_OUT)
        # output rows/cols r::4 that exist, for each offset r inside a 4x4 output tile
        self.out_h = [len(range(r, H, M_OUT)) for r in range(M_OUT)]
        self.out_w = [len(range(r, W, M_OUT)) for r in range(M_OUT)]
        self.whole = H == M_OUT * th and W == M_OUT * tw           # the tiles cover the output
        # the input with its zero padding (and the last tiles' overhang): only the inside is
        # ever written, so the border stays zero
        self.P = xp.zeros((nb, M_OUT * th + 4, M_OUT * tw + 4, C), dtype)
        self.D = xp.empty((TILE, TILE, nb, th, tw, C), dtype)      # input tiles
        self.T1 = xp.empty((TILE, TILE, nb * th * tw * C), dtype)  # B^T applied along rows
        self.V = xp.empty((TILE * TILE, nb * th * tw, C), dtype)   # Winograd-domain input
        self.M = xp.empty((TILE * TILE, nb * th * tw, O), dtype)   # ... times U, summed over C
        self.Z = xp.empty((M_OUT, TILE, nb * th * tw * O), dtype)  # A^T applied along rows
        self.Y = xp.empty((M_OUT, M_OUT, nb, th, tw, O), dtype)    # output tiles
        self.GY = None                                             # output-gradient tiles (lazy)
        self.dU = None                                             # one block's weight gradient
        self.b_t = xp.asarray(B_T.astype(dtype))
        self.a_t = xp.asarray(A_T.astype(dtype))


_workspaces = threading.local()


def workspace(xp, nb, H, W, C, O, dtype) -> Workspace:
    """This thread's workspace for blocks of ``nb`` (H, W, C) -> (H, W, O) images.

    Kept between calls (the SNN engine runs each layer once per time chunk, training once
    per step): allocating and zeroing a few MB per call costs page faults. Keyed on the
    image size too, because the padding taps that stay zero depend on it.
    """
    cache = getattr(_workspaces, "cache", None)
    if cache is None:
        cache = _workspaces.cache = {}
    key = (xp.__name__, nb, H, W, C, O, np.dtype(dtype).str)
    ws = cache.get(key)
    if ws is None:
        if len(cache) >= 16:            # many shapes (tests): forget the oldest
            cache.pop(next(iter(cache)))
        ws = cache[key] = Workspace(xp, nb, H, W, C, O, dtype)
    return ws


def _as_tiles(a, th: int, tw: int):
    """The (4, 4, n, th, tw, C) view of a (n, 4*th, 4*tw, C) array: [r, s, n, ty, tx] is
    a[n, 4ty + r, 4tx + s]; a view (only axes are split), so writing to it writes ``a``."""
    n, C = a.shape[0], a.shape[3]
    return a.reshape(n, th, M_OUT, tw, M_OUT, C).transpose(2, 4, 0, 1, 3, 5)


def _input_tiles(x, ws: Workspace):
    """ws.V = B^T d B for every 6x6 tile d of the block x (n, H, W, C), padding 1."""
    xp = xp_of(x)
    n, H, W, C = x.shape
    D, P = ws.D, ws.P
    th, tw = D.shape[3:5]
    P[:, 1:H + 1, 1:W + 1] = x
    # Gather the 6x6 tiles, D[i, j, n, ty, tx] = P[n, 4ty + i, 4tx + j], in four copies: taps
    # 0-3 of every tile are P seen as tiles side by side, taps 4-5 the next tile's 0-1 (one
    # Python call per tap, 36, would hold the GIL the other thread needs)
    for i0, di in ((0, M_OUT), (M_OUT, TILE - M_OUT)):
        for j0, dj in ((0, M_OUT), (M_OUT, TILE - M_OUT)):
            tiles = _as_tiles(P[:, i0:i0 + M_OUT * th, j0:j0 + M_OUT * tw], th, tw)
            D[i0:i0 + di, j0:j0 + dj] = tiles[:di, :dj]
    # V = B^T d B, one axis at a time: two GEMMs with a 6x6 matrix
    xp.matmul(ws.b_t, D.reshape(TILE, -1), out=ws.T1.reshape(TILE, -1))
    xp.matmul(ws.b_t, ws.T1, out=ws.V.reshape(TILE, TILE, -1))
    return ws.V                                                   # (36, tiles, C)


def _fit(ws: Workspace, n: int, x, O: int) -> Workspace:
    """ws, or fresh buffers for a short last block of n images."""
    if n == ws.D.shape[2]:
        return ws
    _, H, W, C = x.shape
    return workspace(xp_of(x), n, H, W, C, O, ws.D.dtype)   # cached too: no churn per call


def conv3x3_block(x, U, out, ws: Workspace):
    """out[n] = conv3x3(x[n]) for one block (n <= the workspace's images), channels-last.

    x: (n, H, W, C) input; U: (36, C, O) transformed weights; out: (n, H, W, O), written.
    """
    xp = xp_of(x)
    n = x.shape[0]
    ws = _fit(ws, n, x, U.shape[2])
    V = _input_tiles(x, ws)
    xp.matmul(V, U, out=ws.M)                                     # 36 GEMMs (tiles, C) @ (C, O)
    # Y = A^T M A, again one axis at a time
    xp.matmul(ws.a_t, ws.M.reshape(TILE, -1), out=ws.Z.reshape(M_OUT, -1))
    xp.matmul(ws.a_t, ws.Z, out=ws.Y.reshape(M_OUT, M_OUT, -1))
    if ws.whole:                                                  # scatter the 4x4 outputs
        _as_tiles(out, *ws.Y.shape[3:5])[...] = ws.Y
        return out
    for r, hr in enumerate(ws.out_h):                             # ... the last tiles overhang
        for s, wr in enumerate(ws.out_w):
            out[:, r::M_OUT, s::M_OUT] = ws.Y[r, s, :, :hr, :wr]
    return out


def weight_grad_block(x, gy, dU, ws: Workspace):
    """dU += dL/dU for one block: the gradient of the Winograd forward with respect to U.

    The forward is Y = A^T [V_k @ U_k]_k A, linear in U, so dL/dU_k = V_k^T dM_k with
    dM = A dY A^T (the adjoint of the output transform). 36 GEMMs with 36*C*O multiplies
    per tile, against 16*9*C*O for im2col; ``weight_grad`` maps dU back to the 3x3 kernel.
    x: (n, H, W, C) input, gy: (n, H, W, O) output gradient, dU: (36, C, O) accumulator.
    """
    xp = xp_of(x)
    n = x.shape[0]
    O = gy.shape[3]
    ws = _fit(ws, n, x, O)
    V = _input_tiles(x, ws)
    if ws.GY is None:
        ws.GY = xp.zeros(ws.Y.shape, ws.Y.dtype)                  # zeros: outputs past the edge
    if ws.whole:                                                  # gather the 4x4 output tiles
        ws.GY[...] = _as_tiles(gy, *ws.Y.shape[3:5])
    else:
        for r, hr in enumerate(ws.out_h):
            for s, wr in enumerate(ws.out_w):
                ws.GY[r, s, :, :hr, :wr] = gy[:, r::M_OUT, s::M_OUT]
    # dM = A dY A^T, one axis at a time (A = a_t.T is 6x4); Z's memory holds the middle step
    z = ws.Z.reshape(TILE, M_OUT, -1)
    xp.matmul(ws.a_t.T, ws.GY.reshape(M_OUT, -1), out=z.reshape(TILE, -1))
    xp.matmul(ws.a_t.T, z, out=ws.M.reshape(TILE, TILE, -1))
    if ws.dU is None:
        ws.dU = xp.empty(dU.shape, dU.dtype)                       # no fresh 36*C*O per block
    dU += xp.matmul(V.transpose(0, 2, 1), ws.M, out=ws.dU)        # (36, C, O)
    return dU


def _over_blocks(x_nhwc, O, dtype, per_block, start=None, nb=None):
    """Run per_block(n0, n1, ws, acc) over blocks of ``nb`` images of the (N, H, W, C) input,
    the blocks split over the CPU threads (NumPy) or all at once (GPU); each thread has its
    workspace ``ws`` and its accumulator ``acc = start()`` (None without ``start``).
    Returns the accumulators in slice order."""
    xp = xp_of(x_nhwc)
    N, H, W, C = x_nhwc.shape
    nb = nb or block_images(H, W, C, np.dtype(dtype).itemsize, N, xp is not np)

    def work(b0, b1):
        lo, hi = b0 * nb, min(N, b1 * nb)
        ws = workspace(xp, min(nb, hi - lo), H, W, C, O, dtype)
        acc = start() if start is not None else None
        for n0 in range(lo, hi, nb):
            per_block(n0, min(hi, n0 + nb), ws, acc)
        return acc

    nblocks = -(-N // nb)
    if xp is not np:
        return [work(0, nblocks)]
    return parallel_for(work, nblocks, x_nhwc.size * 9 * max(1, O // 8), blas=True)


def conv3x3(x_nhwc, U, bias=None, out=None, nb=None, gate=None):
    """out = conv3x3(x) + bias, channels-last: (N, H, W, C) -> (N, H, W, O).

    U: the transformed weights (36, C, O) (``transform_weights``); ``out`` (N, H, W, O) is
    written when given; ``nb`` images per block (default: about ``block_bytes()`` of tiles);
    ``gate`` (N, H, W, O): out *= (gate > 0) block by block (a ReLU's mask in a backward).
    """
    xp = xp_of(x_nhwc)
    N, H, W, _ = x_nhwc.shape
    dtype = out.dtype if out is not None else xp.result_type(x_nhwc.dtype, U.dtype)
    out = xp.empty((N, H, W, U.shape[2]), dtype=dtype) if out is None else out
    U, x_nhwc = U.astype(dtype, copy=False), x_nhwc.astype(dtype, copy=False)

    def block(n0, n1, ws, _):
        o = out[n0:n1]
        conv3x3_block(x_nhwc[n0:n1], U, o, ws)
        if bias is not None:
            o += bias                                                 # while o is in cache
        if gate is not None:
            xp.multiply(o, gate[n0:n1] > 0, out=o)

    _over_blocks(x_nhwc, U.shape[2], dtype, block, nb=nb)
    return out


def conv3x3_weight_grad(x_nhwc, g_nhwc, nb=None):
    """dL/dW (O, C, 3, 3) of a 3x3 'same' conv: per-thread sums of dL/dU, added in slice
    order (deterministic), mapped back by the adjoint of the weight transform."""
    xp = xp_of(x_nhwc)
    C, O = x_nhwc.shape[3], g_nhwc.shape[3]
    dtype = g_nhwc.dtype
    x_nhwc = x_nhwc.astype(dtype, copy=False)

    def block(n0, n1, ws, dU):
        weight_grad_block(x_nhwc[n0:n1], g_nhwc[n0:n1], dU, ws)

    parts = _over_blocks(x_nhwc, O, dtype, block, nb=nb,
                         start=lambda: xp.zeros((TILE * TILE, C, O), dtype=dtype))
    dU = parts[0]
    for d in parts[1:]:
        dU += d
    return weight_grad(dU)
