"""Hand-written layers with explicit backprop, for NumPy and CuPy alike.

Every layer has ``forward(x)`` and ``backward(grad_out) -> grad_in``; parameters live in
``self.params`` and their gradients under the same keys in ``self.grads``. A layer caches
what its backward needs only while ``self.training`` is true.

Activations are NCHW and conv weights OIHW, as in PyTorch, so a PyTorch ``state_dict``
maps onto ours name for name. Convolution is im2col + GEMM over blocks of images; 3x3
stride-1 'same' convs with >= 16 input channels (all of VGG's and ResNet's but the first
and the strided ones) use Winograd F(4x4, 3x3) instead (winograd.py: 4x fewer multiplies,
~2x faster; ``Conv2d.algo = "im2col"`` switches it off). A conv
returns the (N, O, H, W) *view* of a channels-last (N, H, W, O) buffer; ReLU, pooling and
the IF nodes keep that memory order, so the next conv's im2col reads contiguous channel
runs and no large buffer is ever transposed by copy. On the CPU the blocks (and the
elementwise work) are spread over the cores by ``threads.parallel_for``. Naive loop
references (``conv2d_naive``, ``avgpool2d_naive``) sit at the bottom for the tests.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from . import winograd
from .backend import xp_of
from .threads import parallel_for


# --------------------------------------------------------------------------- base classes
class Module:
    """Base class: parameters, gradients, buffers, children, train/eval mode, state_dict.

    ``buffers`` hold state that is saved and loaded with the parameters but is not trained
    (BatchNorm's running statistics): ``state_dict`` lists, module by module, the
    parameters then the buffers (PyTorch's order); ``named_parameters`` (what the optimiser
    walks) lists parameters only.
    """

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.children: OrderedDict[str, Module] = OrderedDict()
        self.training = True

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # -- traversal -------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        """Yield (pytorch-style name, module, key) for every parameter."""
        for mname, mod in self.named_modules():
            for key in mod.params:
                yield (f"{mname}.{key}" if mname else key), mod, key

    def named_buffers(self):
        """Yield (pytorch-style name, module, key) for every buffer."""
        for mname, mod in self.named_modules():
            for key in getattr(mod, "buffers", {}):      # IF nodes in an SNN tree have none
                yield (f"{mname}.{key}" if mname else key), mod, key

    def _named_state(self):
        """(name, dict, key) for each parameter then buffer, module by module."""
        for mname, mod in self.named_modules():
            for store in (mod.params, getattr(mod, "buffers", {})):
                for key in store:
                    yield (f"{mname}.{key}" if mname else key), store, key

    def state_dict(self) -> "OrderedDict[str, object]":
        return OrderedDict((n, d[k]) for n, d, k in self._named_state())

    def load_state_dict(self, state: dict):
        """Copy arrays into the parameters and buffers in place; names and shapes must match."""
        own = {n: (d, k) for n, d, k in self._named_state()}
        missing = [n for n in own if n not in state]
        unexpected = [n for n in state if n not in own]
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for n, (d, k) in own.items():
            src = state[n]
            if tuple(src.shape) != tuple(d[k].shape):
                raise ValueError(f"shape mismatch for {n}: expected {tuple(d[k].shape)}, "
                                 f"got {tuple(src.shape)}")
            xp = xp_of(d[k])
            d[k][...] = xp.asarray(src, dtype=d[k].dtype)

    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for _, m in self.named_modules():
            for k in m.grads:
                m.grads[k][...] = 0

    def to(self, xp, dtype=None):
        """Move parameters and buffers to ``xp``'s device (and dtype) in place; returns self."""
        for _, m in self.named_modules():
            for k, v in list(m.params.items()):
                m.params[k] = xp.asarray(v, dtype=dtype or v.dtype)
                m.grads[k] = xp.zeros_like(m.params[k])
            bufs = getattr(m, "buffers", {})
            for k, v in list(bufs.items()):
                bufs[k] = xp.asarray(v, dtype=dtype or v.dtype)
        return self

    def num_parameters(self) -> int:
        return int(sum(m.params[k].size for _, m, k in self.named_parameters()))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        if not self.children:
            return f"{type(self).__name__}({self.extra_repr()})"
        inner = "\n".join(f"  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.children.items())
        return f"{type(self).__name__}(\n{inner}\n)"


def _he_normal(rng: np.random.Generator, shape, fan_in: int, dtype):
    """He (Kaiming) normal initialisation for ReLU nets: std = sqrt(2 / fan_in)."""
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


# --------------------------------------------------------------------------- im2col helpers
# Convolutions store their output channels-last: an (N, O, H, W) view of an (N, H, W, O)
# buffer. The GEMM then writes rows of output pixels, the next conv reads its im2col rows
# from contiguous channel runs, and no activation is ever transposed by copy.
#
# On the CPU the GEMM runs over blocks of whole images whose im2col matrix is about
# IM2COL_BLOCK_BYTES, so that the block is still in cache when the GEMM reads it (one big
# im2col matrix would go out to memory and back). The block holds a power-of-two number of
# images, so a batch of N images and a batch of T*N (the SNN engine's time chunk) are cut
# alike whenever that power of two divides N: every image meets the same GEMM calls and gets
# bit-identical results in both. On a GPU one block holds the whole batch.
IM2COL_BLOCK_BYTES = 4 << 20
# Inputs with fewer channels (the RGB image) use the channel-major im2col: copying runs of
# C < _FEW_CHANNELS floats channels-last would cost more than the GEMM.
_FEW_CHANNELS = 16


def _im2col(x_cnhw, kh, kw, stride, padding):
    """(C, N, H, W) -> cols (C*kh*kw, N*Ho*Wo), looping over the kh*kw kernel offsets only."""
    xp = xp_of(x_cnhw)
    C, N, H, W = x_cnhw.shape
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    if padding:
        xpad = xp.zeros((C, N, H + 2 * padding, W + 2 * padding), dtype=x_cnhw.dtype)
        xpad[:, :, padding:padding + H, padding:padding + W] = x_cnhw
    else:
        xpad = x_cnhw
    cols = xp.empty((C, kh, kw, N, Ho, Wo), dtype=x_cnhw.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xpad[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride]
    return cols.reshape(C * kh * kw, N * Ho * Wo), Ho, Wo


def _col2im(dcols, shape_cnhw, kh, kw, stride, padding, Ho, Wo):
    """Adjoint of _im2col: scatter-add (C*kh*kw, N*Ho*Wo) back to (C, N, H, W)."""
    xp = xp_of(dcols)
    C, N, H, W = shape_cnhw
    d = dcols.reshape(C, kh, kw, N, Ho, Wo)
    dx = xp.zeros((C, N, H + 2 * padding, W + 2 * padding), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += d[:, i, j]
    if padding:
        dx = dx[:, :, padding:padding + H, padding:padding + W]
    return dx


def _tap_span(n_out, off, padding, stride, n_in):
    """Output positions [lo, hi) whose kernel offset ``off`` lands inside the input, and
    the input position of ``lo``: o*stride + off - padding must lie in [0, n_in)."""
    lo = max(0, -((off - padding) // stride))
    hi = max(lo, min(n_out, (n_in - 1 - off + padding) // stride + 1))
    return lo, hi, lo * stride + off - padding


def _im2col_nhwc(x_nhwc, cols, stride, padding):
    """Channels-last im2col, in place: (n, H, W, C) -> cols (n, Ho, Wo, kh, kw, C).

    Only taps inside the image are written: the rest of ``cols`` must already hold zeros
    (the padding), which stay there when the buffer is reused for the next block.
    """
    _, H, W, _ = x_nhwc.shape
    _, Ho, Wo, kh, kw, _ = cols.shape
    for i in range(kh):
        hl, hh, r0 = _tap_span(Ho, i, padding, stride, H)
        for j in range(kw):
            wl, wh, c0 = _tap_span(Wo, j, padding, stride, W)
            cols[:, hl:hh, wl:wh, i, j] = x_nhwc[:, r0:r0 + stride * (hh - hl):stride,
                                                 c0:c0 + stride * (wh - wl):stride]
    return cols


def _col2im_nhwc(dcols, dx_nhwc, stride, padding):
    """Adjoint of _im2col_nhwc: scatter-add dcols (n, Ho, Wo, kh, kw, C) into (n, H, W, C)."""
    _, H, W, _ = dx_nhwc.shape
    _, Ho, Wo, kh, kw, _ = dcols.shape
    for i in range(kh):
        hl, hh, r0 = _tap_span(Ho, i, padding, stride, H)
        for j in range(kw):
            wl, wh, c0 = _tap_span(Wo, j, padding, stride, W)
            dx_nhwc[:, r0:r0 + stride * (hh - hl):stride,
                    c0:c0 + stride * (wh - wl):stride] += dcols[:, hl:hh, wl:wh, i, j]
    return dx_nhwc


def _channels_last(x) -> bool:
    """True when the (N, C, H, W) array ``x`` is stored as an (N, H, W, C) buffer."""
    return x.transpose(0, 2, 3, 1).flags.c_contiguous


def _empty_channels_last(xp, shape, dtype):
    """An uninitialised (N, C, H, W) array stored channels-last."""
    N, C, H, W = shape
    return xp.empty((N, H, W, C), dtype=dtype).transpose(0, 3, 1, 2)


def _to_channels_last(x):
    """A channels-last copy of the (N, C, H, W) array ``x``."""
    out = _empty_channels_last(xp_of(x), x.shape, x.dtype)
    out[...] = x
    return out


def _reusable(out, shape, dtype):
    """The first shape[0] rows of ``out`` when they can hold an (N, C, H, W) result of
    ``dtype`` stored channels-last, else None (the layer then allocates)."""
    if (out is None or out.dtype != dtype or out.ndim != 4 or tuple(out.shape[1:]) != tuple(shape[1:])
            or out.shape[0] < shape[0] or not _channels_last(out)):
        return None
    return out[:shape[0]]


def _split(fn, a):
    """fn(n0, n1) over slices of a's first axis: on the CPU threads (NumPy), else at once."""
    if xp_of(a) is np:
        parallel_for(fn, a.shape[0], a.size)
    else:
        fn(0, a.shape[0])


def _winograd_blocks(x_nhwc, O, dtype, per_block, start=None):
    """Run per_block(n0, n1, ws, acc) over blocks of images of the (N, H, W, C) input, the
    blocks split over the CPU threads (NumPy) or all at once (GPU); each thread has its
    workspace ``ws`` and its accumulator ``acc = start()`` (None without ``start``).
    Returns the accumulators in slice order."""
    xp = xp_of(x_nhwc)
    N, H, W, C = x_nhwc.shape
    nb = winograd.block_images(H, W, C, np.dtype(dtype).itemsize, N, xp is not np)

    def work(b0, b1):
        lo, hi = b0 * nb, min(N, b1 * nb)
        ws = winograd.workspace(xp, min(nb, hi - lo), H, W, C, O, dtype)
        acc = start() if start is not None else None
        for n0 in range(lo, hi, nb):
            per_block(n0, min(hi, n0 + nb), ws, acc)
        return acc

    nblocks = -(-N // nb)
    if xp is not np:
        return [work(0, nblocks)]
    return parallel_for(work, nblocks, x_nhwc.size * 9 * max(1, O // 8), blas=True)


def _winograd_conv(x_nhwc, U, bias, out_nhwc):
    """out = conv3x3(x) + bias by Winograd F(4x4, 3x3), channels-last, blocks over threads.

    U: the transformed weights (36, C, O) (``winograd.transform_weights``).
    """
    dtype = out_nhwc.dtype
    U = U.astype(dtype, copy=False)
    x_nhwc = x_nhwc.astype(dtype, copy=False)

    def block(n0, n1, ws, _):
        o = out_nhwc[n0:n1]
        winograd.conv3x3_block(x_nhwc[n0:n1], U, o, ws)
        if bias is not None:
            o += bias                                                 # while o is in cache

    _winograd_blocks(x_nhwc, U.shape[2], dtype, block)
    return out_nhwc


def _winograd_weight_grad(x_nhwc, g_nhwc):
    """dL/dW (O, C, 3, 3) of a 3x3 'same' conv by Winograd: per-thread sums of dL/dU, added
    in slice order (deterministic), mapped back by the adjoint of the weight transform."""
    xp = xp_of(x_nhwc)
    C, O = x_nhwc.shape[3], g_nhwc.shape[3]
    dtype = g_nhwc.dtype
    x_nhwc = x_nhwc.astype(dtype, copy=False)

    def block(n0, n1, ws, dU):
        winograd.weight_grad_block(x_nhwc[n0:n1], g_nhwc[n0:n1], dU, ws)

    parts = _winograd_blocks(x_nhwc, O, dtype, block,
                             start=lambda: xp.zeros((winograd.TILE ** 2, C, O), dtype=dtype))
    dU = parts[0]
    for d in parts[1:]:
        dU += d
    return winograd.weight_grad(dU)


# --------------------------------------------------------------------------- layers
class Conv2d(Module):
    """2-D convolution, OIHW weights, NCHW activations: y = W * x + b.

    The output is an (N, O, Ho, Wo) view of a channels-last buffer (see the im2col notes).
    ``algo`` picks the method: ``"auto"`` (default) computes 3x3 stride-1 'same' convs with
    >= 16 input channels by Winograd F(4x4, 3x3) (winograd.py, ~2x faster, equal to a few
    float32 ulps), the rest by im2col + GEMM; ``"im2col"`` always uses im2col + GEMM.
    The same choice applies to the input gradient of backward (itself such a conv).
    """
    ALGOS = ("auto", "im2col")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=np.float32):
        super().__init__()
        k = kernel_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = k, stride, padding
        rng = rng if rng is not None else np.random.default_rng(0)
        fan_in = in_channels * k * k
        self.params["weight"] = _he_normal(rng, (out_channels, in_channels, k, k), fan_in, dtype)
        self.grads["weight"] = np.zeros_like(self.params["weight"])
        if bias:
            self.params["bias"] = np.zeros(out_channels, dtype=dtype)
            self.grads["bias"] = np.zeros_like(self.params["bias"])
        self._cache = None
        self.algo = "auto"

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding}")

    def _winograd(self) -> bool:
        if self.algo not in self.ALGOS:
            raise ValueError(f"unknown conv algo {self.algo!r}; choose one of {', '.join(self.ALGOS)}")
        return (self.algo == "auto" and not self._few()
                and winograd.eligible(self.kernel_size, self.stride, self.padding))

    def _winograd_weights(self):
        """transform_weights(W), kept while W is unchanged (checked by value, not by name:
        weights may be edited in place). The SNN engine runs a layer once per time chunk;
        training changes W every step, so there it is recomputed (and not kept)."""
        w = self.params["weight"]
        if self.training:
            return winograd.transform_weights(w)
        c = getattr(self, "_wino_cache", None)
        if (c is not None and xp_of(c[0]) is xp_of(w) and c[0].dtype == w.dtype
                and c[0].shape == w.shape and bool(xp_of(w).array_equal(c[0], w))):
            return c[1]
        U = winograd.transform_weights(w)
        self._wino_cache = (w.copy(), U)
        return U

    def _out_hw(self, H, W):
        k, s, p = self.kernel_size, self.stride, self.padding
        return (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1

    def _few(self) -> bool:
        return self.in_channels < _FEW_CHANNELS

    def _wmat(self):
        """The weight as the (O, K) GEMM operand, K ordered like the im2col columns."""
        w = self.params["weight"]                                     # (O, C, kh, kw)
        if self._few():
            return w.reshape(self.out_channels, -1)                  # K = (C, kh, kw)
        xp = xp_of(w)
        return xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(self.out_channels, -1)

    def _block_images(self, x, Ho, Wo) -> int:
        """Images per GEMM block: a power of two near IM2COL_BLOCK_BYTES of im2col (CPU),
        the whole batch (GPU)."""
        if xp_of(x) is not np:
            return x.shape[0]
        K = x.shape[1] * self.kernel_size ** 2
        nb = max(1, IM2COL_BLOCK_BYTES // (Ho * Wo * K * x.itemsize))
        return 1 << (nb.bit_length() - 1)

    def _blocks(self, x, Ho, Wo, nb, lo, hi):
        """Yield (n0, n1, cols) over blocks of ``nb`` images from image ``lo`` to ``hi``;
        cols (rows, K) is the block's im2col (a reused buffer).

        ``x`` is the (N, C, H, W) input; the channels-last path wants it stored
        channels-last (``forward`` makes sure).
        """
        xp = xp_of(x)
        C = x.shape[1]
        k, s, p = self.kernel_size, self.stride, self.padding
        if self._few():
            for n0 in range(lo, hi, nb):
                n1 = min(hi, n0 + nb)
                cols, _, _ = _im2col(x[n0:n1].transpose(1, 0, 2, 3), k, k, s, p)
                yield n0, n1, cols.T                                  # (rows, K) view
            return
        xh = x.transpose(0, 2, 3, 1)                                  # (N, H, W, C)
        buf = xp.zeros((min(nb, hi - lo), Ho, Wo, k, k, C), dtype=x.dtype)  # zeros = padding
        for n0 in range(lo, hi, nb):
            n1 = min(hi, n0 + nb)
            cols = _im2col_nhwc(xh[n0:n1], buf[:n1 - n0], s, p)
            yield n0, n1, cols.reshape((n1 - n0) * Ho * Wo, C * k * k)

    def _over_blocks(self, x, Ho, Wo, work):
        """Run work(lo, hi, nb) over ranges of whole blocks, split over the CPU threads."""
        N, nb = x.shape[0], self._block_images(x, Ho, Wo)
        nblocks = -(-N // nb)
        if xp_of(x) is not np:
            return [work(0, N, nb)]
        elements = x.size * self.kernel_size ** 2 * max(1, self.out_channels // 8)
        return parallel_for(lambda b0, b1: work(b0 * nb, min(N, b1 * nb), nb), nblocks,
                            elements, blas=True)

    def forward(self, x, out=None):
        """x: (N, C, H, W) -> (N, O, Ho, Wo), stored channels-last.

        ``out`` (optional): an earlier output of this layer whose buffer may be overwritten
        (the SNN engine reuses buffers between time chunks instead of allocating anew).
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        xp = xp_of(x)
        N, O = x.shape[0], self.out_channels
        Ho, Wo = self._out_hw(*x.shape[2:])
        if Ho < 1 or Wo < 1:
            raise ValueError(f"Conv2d: input {tuple(x.shape[2:])} is smaller than the kernel "
                             f"{self.kernel_size} with padding {self.padding}")
        if not self._few() and not _channels_last(x):
            x = _to_channels_last(x)                                  # e.g. a user's NCHW batch
        Wm = self._wmat()                                             # (O, K)
        dtype = xp.result_type(x.dtype, Wm.dtype)
        out = _reusable(out, (N, O, Ho, Wo), dtype)
        out = (xp.empty((N, Ho, Wo, O), dtype=dtype) if out is None
               else out.transpose(0, 2, 3, 1))                        # (N, Ho, Wo, O)
        rows = out.reshape(N * Ho * Wo, O)
        bias = self.params.get("bias")

        def work(lo, hi, nb):
            for n0, n1, cols in self._blocks(x, Ho, Wo, nb, lo, hi):
                r = rows[n0 * Ho * Wo:n1 * Ho * Wo]
                xp.matmul(cols, Wm.T, out=r)                          # the GEMM
                if bias is not None:
                    r += bias                                         # while r is in cache

        if self._winograd():
            _winograd_conv(x.transpose(0, 2, 3, 1), self._winograd_weights(), bias, out)
        else:
            self._over_blocks(x, Ho, Wo, work)
        if self.training:
            self._cache = (x, Ho, Wo)          # backward recomputes im2col block by block
        return out.transpose(0, 3, 1, 2)

    def backward(self, grad, input_grad: bool = True):
        """dL/dW and dL/db are added to ``grads``; returns dL/dx (None if not ``input_grad``)."""
        x, Ho, Wo = self._cache
        xp = xp_of(grad)
        if self._winograd():
            return self._backward_winograd(x, grad, input_grad)
        N, C, H, Wd = x.shape
        O, k, s, p = self.out_channels, self.kernel_size, self.stride, self.padding
        g = xp.ascontiguousarray(grad.transpose(0, 2, 3, 1)).reshape(N * Ho * Wo, O)
        Wm = self._wmat()                                             # (O, K)
        few = self._few()
        # dx of a stride-1 conv is itself a conv: of g with the flipped, transposed kernel and
        # padding k-1-p. Its im2col + GEMM (inner size k*k*O) beats a GEMM of inner size O
        # followed by a col2im scatter-add.
        flip = not few and s == 1 and p <= k - 1 and input_grad
        if input_grad and few:
            dx = xp.empty(x.shape, dtype=g.dtype)                    # (N, C, H, W)
        elif input_grad:
            dxh = (xp.empty if flip else xp.zeros)((N, H, Wd, C), dtype=g.dtype)  # (N, H, W, C)
        if flip:
            gh = g.reshape(N, Ho, Wo, O)
            w = self.params["weight"][:, :, ::-1, ::-1]              # (O, C, kh, kw) flipped
            Wt = xp.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(k * k * O, C)
            dx_rows = dxh.reshape(N * H * Wd, C)

        def work(lo, hi, nb):
            """Weight and bias gradients of images lo..hi; their dx written in place."""
            dWm = xp.zeros(Wm.shape, dtype=xp.result_type(g.dtype, x.dtype))
            db = g[lo * Ho * Wo:hi * Ho * Wo].sum(axis=0)
            if flip:
                gbuf = xp.zeros((min(nb, hi - lo), H, Wd, k, k, O), dtype=g.dtype)  # padding
            for n0, n1, cols in self._blocks(x, Ho, Wo, nb, lo, hi):
                gb = g[n0 * Ho * Wo:n1 * Ho * Wo]                    # (rows, O)
                dWm += gb.T @ cols
                if not input_grad:
                    continue
                if few:
                    dcols = Wm.T @ gb.T                               # (K, rows)
                    dxb = _col2im(dcols, (C, n1 - n0, H, Wd), k, k, s, p, Ho, Wo)
                    dx[n0:n1] = dxb.transpose(1, 0, 2, 3)
                elif flip:
                    gcols = _im2col_nhwc(gh[n0:n1], gbuf[:n1 - n0], 1, k - 1 - p)
                    xp.matmul(gcols.reshape((n1 - n0) * H * Wd, k * k * O), Wt,
                              out=dx_rows[n0 * H * Wd:n1 * H * Wd])
                else:
                    dcols = (gb @ Wm).reshape(n1 - n0, Ho, Wo, k, k, C)
                    _col2im_nhwc(dcols, dxh[n0:n1], s, p)
            return dWm, db

        parts = self._over_blocks(x, Ho, Wo, work)
        dWm, db = parts[0]
        for dw_i, db_i in parts[1:]:                                  # in slice order
            dWm += dw_i
            db += db_i
        if "bias" in self.params:
            self.grads["bias"] += db
        if few:
            self.grads["weight"] += dWm.reshape(self.params["weight"].shape)
            return dx if input_grad else None
        self.grads["weight"] += dWm.reshape(O, k, k, C).transpose(0, 3, 1, 2)
        return dxh.transpose(0, 3, 1, 2) if input_grad else None

    def _backward_winograd(self, x, grad, input_grad=True):
        """Backward of a Winograd conv: dW by the adjoint of the Winograd forward, dx as the
        conv of the gradient with the flipped, transposed kernel (3x3 'same' again)."""
        xp = xp_of(grad)
        g = grad.transpose(0, 2, 3, 1)                                # (N, H, W, O)
        if not g.flags.c_contiguous:
            g = xp.ascontiguousarray(g)
        xh = x.transpose(0, 2, 3, 1)                                  # (N, H, W, C)
        dW = _winograd_weight_grad(xh, g)
        self.grads["weight"] += dW
        if "bias" in self.params:
            self.grads["bias"] += g.reshape(-1, self.out_channels).sum(axis=0)
        if not input_grad:
            return None
        w_flip = self.params["weight"][:, :, ::-1, ::-1].transpose(1, 0, 2, 3)   # (C, O, 3, 3)
        dxh = xp.empty(xh.shape, dtype=g.dtype)
        _winograd_conv(g, winograd.transform_weights(w_flip), None, dxh)
        return dxh.transpose(0, 3, 1, 2)


class Linear(Module):
    """Fully connected layer, PyTorch layout: weight (out, in), y = x W^T + b."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params["weight"] = _he_normal(rng, (out_features, in_features), in_features, dtype)
        self.grads["weight"] = np.zeros_like(self.params["weight"])
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)
            self.grads["bias"] = np.zeros_like(self.params["bias"])
        self._x = None

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"

    def forward(self, x):
        # x: (N, in) -> (N, out)
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
    """max(x, 0) (Eq. 1). In a converted SNN every ReLU becomes an IF node."""

    def __init__(self):
        super().__init__()
        self._mask = None

    record = None  # set to a list to collect outputs (threshold balancing reads them)

    def forward(self, x):
        xp = xp_of(x)
        if x.ndim == 0:
            if self.training:
                self._mask = x > 0
            return xp.maximum(x, 0)
        out = xp.empty_like(x)                               # keeps the memory order
        mask = None
        if self.training:
            mask = self._mask = xp.empty_like(x, dtype=bool)

        def relu(n0, n1):
            xp.maximum(x[n0:n1], 0, out=out[n0:n1])
            if mask is not None:
                xp.greater(x[n0:n1], 0, out=mask[n0:n1])

        _split(relu, x)
        if self.record is not None:
            self.record.append(out)
        return out

    def backward(self, grad):
        xp = xp_of(grad)
        if grad.ndim == 0:
            return grad * self._mask
        dx = xp.empty_like(grad)
        _split(lambda n0, n1: xp.multiply(grad[n0:n1], self._mask[n0:n1], out=dx[n0:n1]), grad)
        return dx


class AvgPool2d(Module):
    """Average pooling without padding; loops over the k*k window offsets, not over pixels."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size
        self._shape = None
        self._channels_last = False

    def extra_repr(self):
        return f"k={self.kernel_size}, s={self.stride}"

    def _out_hw(self, H, W):
        k, s = self.kernel_size, self.stride
        return (H - k) // s + 1, (W - k) // s + 1

    def forward(self, x, out=None):
        """x: (N, C, H, W) -> (N, C, Ho, Wo) in x's memory order; ``out`` as for Conv2d."""
        if x.ndim != 4:
            raise ValueError(f"AvgPool2d expects (N, C, H, W), got {tuple(x.shape)}")
        xp = xp_of(x)
        k, s = self.kernel_size, self.stride
        Ho, Wo = self._out_hw(*x.shape[2:])
        if Ho < 1 or Wo < 1:
            raise ValueError(f"AvgPool2d: input {tuple(x.shape[2:])} is smaller than the "
                             f"window {self.kernel_size}")
        first = x[:, :, 0:s * Ho:s, 0:s * Wo:s]
        out = _reusable(out, first.shape, x.dtype) if _channels_last(x) else None
        if out is None:
            out = xp.empty_like(first)                   # keeps the memory order

        def pool(n0, n1):
            o, xs = out[n0:n1], x[n0:n1]
            o[...] = xs[:, :, 0:s * Ho:s, 0:s * Wo:s]
            for i in range(k):
                for j in range(k):
                    if i or j:
                        o += xs[:, :, i:i + s * Ho:s, j:j + s * Wo:s]
            o *= 1.0 / (k * k)

        _split(pool, x)
        if self.training:
            self._shape = x.shape
            self._channels_last = _channels_last(x)
        return out

    def backward(self, grad):
        xp = xp_of(grad)
        k, s = self.kernel_size, self.stride
        Ho, Wo = grad.shape[2:]
        g = grad * (1.0 / (k * k))
        # dx in the forward input's memory order, so the conv before gets what it wrote
        if self._channels_last:
            dx = _empty_channels_last(xp, self._shape, g.dtype)
        else:
            dx = xp.empty(self._shape, dtype=g.dtype)
        tiles = s == k and self._shape[2] == k * Ho and self._shape[3] == k * Wo

        def spread(n0, n1):
            d, gs = dx[n0:n1], g[n0:n1]
            if tiles:
                # non-overlapping windows that tile the input: each offset written once
                for i in range(k):
                    for j in range(k):
                        d[:, :, i::s, j::s] = gs
                return
            d[...] = 0
            for i in range(k):
                for j in range(k):
                    d[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += gs

        _split(spread, dx)
        return dx


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) in NCHW order (PyTorch's flatten order)."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._shape)


class Sequential(Module):
    """Run children in order; children are named "0", "1", ... or by an OrderedDict."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (dict, OrderedDict)):
            for name, layer in layers[0].items():
                self.children[name] = layer
        else:
            for i, layer in enumerate(layers):
                self.children[str(i)] = layer

    def __iter__(self):
        return iter(self.children.values())

    def __len__(self):
        return len(self.children)

    def __getitem__(self, i):
        return list(self.children.values())[i]

    def forward(self, x):
        for layer in self.children.values():
            x = layer.forward(x)
        return x

    def backward(self, grad, input_grad: bool = True):
        """Backprop through the children. ``input_grad=False``: the caller does not need
        dL/dx (a training step: x is the data), so the first layer may skip computing it
        (a conv then returns None); the parameter gradients are the same."""
        layers = list(self.children.values())
        for i in range(len(layers) - 1, -1, -1):
            if i == 0 and not input_grad and isinstance(layers[0], (Sequential, Conv2d)):
                return layers[0].backward(grad, input_grad=False)
            grad = layers[i].backward(grad)
        return grad

    def flat(self):
        """Leaf modules in execution order, nested Sequentials expanded (blocks stay whole)."""
        for layer in self.children.values():
            if isinstance(layer, Sequential):
                yield from layer.flat()
            else:
                yield layer


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
        if bn:
            from .batchnorm import BatchNorm2d  # batchnorm imports this module
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
        c = self.children
        g = c["relu2"].backward(grad)
        gx = g
        for name in reversed(self._MAIN):
            if name in c:
                gx = c[name].backward(gx)
        sc = c.get("shortcut")
        return gx + (g if sc is None else sc.backward(g))


# --------------------------------------------------------------------------- naive references
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """Direct-definition convolution with explicit loops (slow; for tests only).

    y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * xpad[n, c, i*s + p, j*s + q]
    """
    x = np.asarray(x)
    weight = np.asarray(weight)
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    y = np.zeros((N, O, Ho, Wo), dtype=np.float64)
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp_[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[n, o, i, j] = np.sum(patch.astype(np.float64) * weight[o])
            if bias is not None:
                y[n, o] += bias[o]
    return y


def avgpool2d_naive(x, kernel_size, stride=None):
    """Average pooling with explicit loops (slow; for tests only)."""
    x = np.asarray(x)
    s = stride or kernel_size
    k = kernel_size
    N, C, H, W = x.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    y = np.zeros((N, C, Ho, Wo), dtype=np.float64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    y[n, c, i, j] = x[n, c, i * s:i * s + k, j * s:j * s + k].mean()
    return y
