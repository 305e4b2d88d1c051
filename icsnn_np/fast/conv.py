"""The fast convolution: the teaching Conv2d's function, computed by blocks of images.

``FastConv2d`` is a twin of a ``layers.Conv2d``: it shares the original's parameters and
gradients (``layers.py``'s ``twin``) and computes the same forward and backward, faster:

* **channels-last** output (nhwc.py): the GEMM writes rows of output pixels and the next
  conv reads contiguous channel runs;
* **blocks of images** whose im2col matrix fits in cache (IM2COL_BLOCK_BYTES, from the L2
  size), the blocks split over the CPU threads (threads.py), written into a reused output (``out=``);
* **Winograd F(4x4, 3x3)** (winograd.py) for 3x3 stride-1 'same' convs with >= 16 input
  channels, forward, input gradient and weight gradient: 4x fewer multiplies, ~2x faster,
  rounding ~2e-6 of the output's magnitude in float32 where im2col rounds ~1e-7.

``algo = "im2col"`` keeps the blocks and threads but not Winograd. A conv with fewer than
16 input channels (the RGB input) uses the channel-major ``layers.im2col``.
"""
from __future__ import annotations

import numpy as np

from ..backend import xp_of
from ..layers import Conv2d, col2im, im2col
from . import winograd
from .cache import l2_times
from .nhwc import col2im_nhwc, im2col_nhwc, is_channels_last, reusable, to_channels_last
from .threads import parallel_for
from .twin import Twin

# On the CPU the GEMM runs over blocks of whole images whose im2col matrix is about this
# big (None: 4 x the L2 cache read from the machine, cache.py; 4 MB where unknown), so the
# block is still in cache when the GEMM reads it. The block holds a power-of-two
# number of images, so a batch of N images and a batch of T*N (the SNN engine's time chunk)
# are cut alike whenever that power of two divides N: every image meets the same GEMM calls
# and gets bit-identical results in both. On a GPU one block holds the whole batch.
IM2COL_BLOCK_BYTES = None
# Inputs with fewer channels (the RGB image) use the channel-major im2col: copying runs of
# C < FEW_CHANNELS floats channels-last would cost more than the GEMM.
FEW_CHANNELS = 16
ALGOS = ("auto", "im2col")


class FastConv2d(Twin, Conv2d):
    """Conv2d computed by blocks, channels-last, or Winograd (see the module docstring)."""

    algo = "auto"
    _wino_cache = None
    relu_input = False      # its input is a ReLU's output: backward applies (x > 0) to dx

    def _few(self) -> bool:
        return self.in_channels < FEW_CHANNELS

    def uses_winograd(self) -> bool:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown conv algo {self.algo!r}; choose one of {', '.join(ALGOS)}")
        return (self.algo == "auto" and not self._few()
                and winograd.eligible(self.kernel_size, self.stride, self.padding))

    def _winograd_weights(self):
        """transform_weights(W), kept while W is unchanged (checked by value, not by name:
        weights may be edited in place). The SNN engine runs a layer once per time chunk;
        training changes W every step, so there it is recomputed (and not kept). On a GPU
        it is always recomputed: the check by value would read a bool back to the host, a
        sync per layer and chunk, and the transform is one small GEMM there."""
        w = self.params["weight"]
        if self.training or xp_of(w) is not np:
            return winograd.transform_weights(w)
        c = self._wino_cache
        if (c is not None and xp_of(c[0]) is xp_of(w) and c[0].dtype == w.dtype
                and c[0].shape == w.shape and bool(xp_of(w).array_equal(c[0], w))):
            return c[1]
        U = winograd.transform_weights(w)
        self._wino_cache = (w.copy(), U)
        return U

    def _wmat(self):
        """The weight as the (O, K) GEMM operand, K ordered like the im2col columns."""
        w = self.params["weight"]                                     # (O, C, kh, kw)
        if self._few():
            return w.reshape(self.out_channels, -1)                  # K = (C, kh, kw)
        return xp_of(w).ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(self.out_channels, -1)

    def _block_images(self, x, Ho, Wo) -> int:
        """Images per GEMM block: a power of two near IM2COL_BLOCK_BYTES of im2col (CPU),
        the whole batch (GPU)."""
        if xp_of(x) is not np:
            return x.shape[0]
        K = x.shape[1] * self.kernel_size ** 2
        size = IM2COL_BLOCK_BYTES or l2_times(4, 4 << 20)
        nb = max(1, size // (Ho * Wo * K * x.itemsize))
        return 1 << (nb.bit_length() - 1)

    def _blocks(self, x, Ho, Wo, nb, lo, hi):
        """Yield (n0, n1, cols) over blocks of ``nb`` images from image ``lo`` to ``hi``;
        cols (rows, K) is the block's im2col (a reused buffer). ``x`` must be stored
        channels-last unless the layer has few input channels (``forward`` sees to it)."""
        xp = xp_of(x)
        C = x.shape[1]
        k, s, p = self.kernel_size, self.stride, self.padding
        if self._few():
            for n0 in range(lo, hi, nb):
                n1 = min(hi, n0 + nb)
                yield n0, n1, im2col(x[n0:n1], k, s, p)[0].T        # (rows, K) view
            return
        xh = x.transpose(0, 2, 3, 1)                                  # (N, H, W, C)
        buf = xp.zeros((min(nb, hi - lo), Ho, Wo, k, k, C), dtype=x.dtype)  # zeros = padding
        for n0 in range(lo, hi, nb):
            n1 = min(hi, n0 + nb)
            cols = im2col_nhwc(xh[n0:n1], buf[:n1 - n0], s, p)
            yield n0, n1, cols.reshape((n1 - n0) * Ho * Wo, C * k * k)

    def _over_blocks(self, x, Ho, Wo, work):
        """Run work(lo, hi, nb) over ranges of whole blocks, split over the CPU threads."""
        N, nb = x.shape[0], self._block_images(x, Ho, Wo)
        if xp_of(x) is not np:
            return [work(0, N, nb)]
        elements = x.size * self.kernel_size ** 2 * max(1, self.out_channels // 8)
        return parallel_for(lambda b0, b1: work(b0 * nb, min(N, b1 * nb), nb), -(-N // nb),
                            elements, blas=True)

    def forward(self, x, out=None):
        """x: (N, C, H, W) -> (N, O, Ho, Wo), stored channels-last.

        ``out`` (optional): an earlier output of this layer whose buffer may be overwritten
        (the SNN engine reuses buffers between time chunks instead of allocating anew).
        """
        Ho, Wo = self.check_input(x)
        xp = xp_of(x)
        N, O = x.shape[0], self.out_channels
        if not self._few() and not is_channels_last(x):
            x = to_channels_last(x)                                   # e.g. a user's NCHW batch
        Wm = self._wmat()                                             # (O, K)
        dtype = xp.result_type(x.dtype, Wm.dtype)
        out = reusable(out, (N, O, Ho, Wo), dtype)
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

        if self.uses_winograd():
            winograd.conv3x3(x.transpose(0, 2, 3, 1), self._winograd_weights(), bias, out)
        else:
            self._over_blocks(x, Ho, Wo, work)
        if self.training:
            self._cache = x                    # backward recomputes im2col block by block
        return out.transpose(0, 3, 1, 2)

    def backward(self, grad, input_grad: bool = True):
        """dL/dW and dL/db are added to ``grads``; returns dL/dx (None if not ``input_grad``)."""
        x = self._cache
        if self.uses_winograd():
            return self._backward_winograd(x, grad, input_grad)
        xp = xp_of(grad)
        N, C, H, Wd = x.shape
        Ho, Wo = grad.shape[2:]
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
                    dx[n0:n1] = col2im(Wm.T @ gb.T, (n1 - n0, C, H, Wd), k, s, p)
                elif flip:
                    gcols = im2col_nhwc(gh[n0:n1], gbuf[:n1 - n0], 1, k - 1 - p)
                    xp.matmul(gcols.reshape((n1 - n0) * H * Wd, k * k * O), Wt,
                              out=dx_rows[n0 * H * Wd:n1 * H * Wd])
                else:
                    col2im_nhwc((gb @ Wm).reshape(n1 - n0, Ho, Wo, k, k, C), dxh[n0:n1], s, p)
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
            return self._gate(dx, x) if input_grad else None
        self.grads["weight"] += dWm.reshape(O, k, k, C).transpose(0, 3, 1, 2)
        return self._gate(dxh.transpose(0, 3, 1, 2), x) if input_grad else None

    def _gate(self, dx, x):
        """dx * (x > 0) in place when a ReLU feeds this conv (``fuse_relu_masks``)."""
        if self.relu_input:
            xp_of(dx).multiply(dx, x > 0, out=dx)
        return dx

    def _backward_winograd(self, x, grad, input_grad=True):
        """Backward of a Winograd conv: dW by the adjoint of the Winograd forward, dx as the
        conv of the gradient with the flipped, transposed kernel (3x3 'same' again)."""
        xp = xp_of(grad)
        g = grad.transpose(0, 2, 3, 1)                                # (N, H, W, O)
        if not g.flags.c_contiguous:
            g = xp.ascontiguousarray(g)
        xh = x.transpose(0, 2, 3, 1)                                  # (N, H, W, C)
        self.grads["weight"] += winograd.conv3x3_weight_grad(xh, g)
        if "bias" in self.params:
            self.grads["bias"] += g.reshape(-1, self.out_channels).sum(axis=0)
        if not input_grad:
            return None
        w_flip = self.params["weight"][:, :, ::-1, ::-1].transpose(1, 0, 2, 3)   # (C, O, 3, 3)
        dxh = xp.empty(xh.shape, dtype=g.dtype)
        winograd.conv3x3(g, winograd.transform_weights(w_flip), None, dxh,
                         gate=xh if self.relu_input else None)
        return dxh.transpose(0, 3, 1, 2)
