# %% [markdown]
# # Step 1 — Arrays, backends and a convolution written by hand
#
# Everything in `icsnn_np` is plain array code: no deep-learning framework. This step shows
# the three ideas the rest of the course leans on:
#
# 1. **Arrays and backends.** Images are NumPy arrays of shape `(N, C, H, W)` (batch,
#    channels, height, width). The same code runs on a GPU through CuPy: every function asks
#    for an *array module* `xp` (`numpy` or `cupy`) instead of importing one.
#    `get_xp("numpy")` / `get_xp("cupy")` picks it once; `to_device` / `to_host` move data
#    at the edges.
# 2. **Convolution as one matrix product (im2col).** The definition of a convolution is
#    four nested loops (`conv2d_naive`). Fast code copies every `k x k` patch into a row of
#    a matrix ("im2col") and does a single matrix multiply (GEMM).
# 3. **Check the fast code against the slow, obvious one.** The two must agree to float
#    rounding; we print the largest difference.
#
# Run: `python tutorials/01_arrays_and_convolution.py --quick` (a second) or `--full`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from _common import host, load_slice, result, savefig, setup
from icsnn_np.backend import to_device, to_host
from icsnn_np.layers import AvgPool2d, Conv2d, avgpool2d_naive, conv2d_naive

run = setup("Step 1: arrays, backends and convolution")
xp = run.xp                  # numpy, or cupy with --backend cupy

# %% [markdown]
# ## Arrays: a real CIFAR-10 image
#
# The package bundles a slice of CIFAR-10 (1,000 training + 1,000 test images). Images are
# `uint8` in `(N, 3, 32, 32)`: channel planes R, G, B, each 32 x 32 pixels.

# %%
ds = load_slice()
print("training images", ds.x_train.shape, ds.x_train.dtype, "labels", ds.y_train[:10])
print("classes:", ", ".join(ds.classes))
img = ds.x_test[:1].astype(np.float32) / 255.0           # (1, 3, 32, 32), values in [0, 1]
x = to_device(img, xp)                                    # host -> device (no-op on NumPy)
print("on the device:", type(x).__module__, x.shape)

# %% [markdown]
# ## The definition: four loops
#
# For input `x` (N, C, H, W), weights `W` (O, C, k, k), stride `s` and zero padding `p`:
#
#     y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xpad[n, c, i*s + u, j*s + v]
#
# `icsnn_np.layers.conv2d_naive` is exactly this, with Python loops over n, o, i, j. It is
# slow, and obviously right.
#
# ## im2col: every patch becomes a row
#
# Collect, for every output pixel `(n, i, j)`, the `C*k*k` input values its kernel sees into
# one row. The convolution is then `cols @ W.reshape(O, C*k*k).T` — one GEMM. We loop over
# the `k*k` kernel offsets only (9 copies for a 3x3 kernel), never over pixels.

# %%
def im2col(x, k, stride=1, padding=0):
    """(N, C, H, W) -> cols (N*Ho*Wo, C*k*k): row = one output pixel's receptive field."""
    N, C, H, W = x.shape
    Ho = (H + 2 * padding - k) // stride + 1
    Wo = (W + 2 * padding - k) // stride + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((N, Ho, Wo, C, k, k), dtype=x.dtype)
    for u in range(k):                  # kernel row offset
        for v in range(k):              # kernel column offset
            patch = xpad[:, :, u:u + stride * Ho:stride, v:v + stride * Wo:stride]  # (N, C, Ho, Wo)
            cols[:, :, :, :, u, v] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(N * Ho * Wo, C * k * k), Ho, Wo


def conv2d_im2col(x, weight, bias, stride=1, padding=0):
    """Convolution as one matrix product: (N, C, H, W) -> (N, O, Ho, Wo)."""
    O, C, k, _ = weight.shape
    cols, Ho, Wo = im2col(x, k, stride, padding)                 # (N*Ho*Wo, C*k*k)
    y = cols @ weight.reshape(O, -1).T + bias                     # (N*Ho*Wo, O): the GEMM
    return y.reshape(x.shape[0], Ho, Wo, O).transpose(0, 3, 1, 2)


# %% [markdown]
# ## Check: im2col against the loops
#
# Random inputs and weights in float64, a padded and a strided case. The largest absolute
# difference should be around 1e-15 (float64 rounding). The package's `Conv2d` layer (the
# same idea, tuned: channels-last buffers, cache-sized blocks) is checked too, in float32.

# %%
rng = np.random.default_rng(0)
N, C, H, O = run.pick((2, 3, 12, 4), (4, 3, 32, 8))
xr = rng.standard_normal((N, C, H, H))
wr = rng.standard_normal((O, C, 3, 3))
br = rng.standard_normal(O)
worst = 0.0
for stride, padding in [(1, 1), (2, 0)]:
    t0 = time.perf_counter()
    ref = conv2d_naive(xr, wr, br, stride, padding)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = conv2d_im2col(xr, wr, br, stride, padding)
    t_fast = time.perf_counter() - t0
    diff = float(np.abs(fast - ref).max())
    worst = max(worst, diff)
    print(f"stride {stride} padding {padding}: output {fast.shape}, max |im2col - naive| = "
          f"{diff:.2e}   (naive {1e3 * t_naive:.1f} ms, im2col {1e3 * t_fast:.2f} ms)")
result("conv_im2col_vs_naive_maxdiff", worst)

layer = Conv2d(C, O, 3, stride=1, padding=1)
layer.params["weight"][...] = wr
layer.params["bias"][...] = br
layer.to(xp).eval()
y_layer = to_host(layer(to_device(xr.astype(np.float32), xp)))   # device -> host: sync point
diff_layer = float(np.abs(y_layer - conv2d_naive(xr, wr, br, 1, 1)).max())
print(f"icsnn_np.layers.Conv2d (float32) vs naive: max diff {diff_layer:.2e}")
result("conv_layer_vs_naive_maxdiff", diff_layer)

pool = AvgPool2d(2)
diff_pool = float(np.abs(to_host(pool(to_device(xr, xp))) - avgpool2d_naive(xr, 2)).max())
print(f"AvgPool2d vs naive: max diff {diff_pool:.2e}")
result("avgpool_vs_naive_maxdiff", diff_pool)

# %% [markdown]
# ## Faster still: Winograd's minimal filtering
#
# im2col spends 9 multiplies per output and input channel on a 3x3 filter. Winograd's
# algorithm F(4, 3) gets 4 outputs of a 3-tap filter from 6 inputs with only 6 multiplies:
# transform the 6 inputs (`B^T d`) and the 3 taps (`G g`), multiply elementwise, transform
# back (`A^T`). In 2-D, F(4x4, 3x3) needs 36 multiplies for 16 outputs instead of 144, and
# summed over channels the 36 elementwise products become 36 GEMMs — 4x fewer multiplies.
# `Conv2d` uses it for 3x3 stride-1 'same' convolutions with >= 16 input channels
# (`icsnn_np/winograd.py`). Below: the 1-D identity on one tile, then the layer in float64
# against the loops. The transforms add and subtract values up to 8x larger than the output,
# so in float32 it rounds ~20x more than im2col (still ~1e-6): a trade the benchmark measures.

# %%
from icsnn_np import winograd  # noqa: E402

d, g = rng.normal(size=6), rng.normal(size=3)                    # 6 inputs, 3 taps
y_wino = winograd.A_T @ ((winograd.G @ g) * (winograd.B_T @ d))  # 6 multiplies
y_def = np.array([d[i:i + 3] @ g for i in range(4)])             # 12 multiplies
print("1-D F(4,3):", np.round(y_wino, 6), " definition:", np.round(y_def, 6))

wide = Conv2d(16, 8, 3, stride=1, padding=1, dtype=np.float64)   # Winograd-eligible
x16 = rng.normal(size=(2, 16, 9, 11))
diff_wino = float(np.abs(wide.forward(x16) - conv2d_naive(x16, wide.params["weight"],
                                                          wide.params["bias"], 1, 1)).max())
print(f"Conv2d (Winograd, float64) vs naive: max diff {diff_wino:.2e}")
result("winograd_vs_naive_maxdiff", diff_wino)

# %% [markdown]
# ## Seeing it: three hand-made filters on a real image
#
# A convolution with a 3x3 kernel compares each pixel with its neighbours. Below: a
# vertical-edge and a horizontal-edge detector (Sobel) and a blur, applied with our
# `conv2d_im2col` to the grey-level image, and a piece of the im2col matrix itself (each row
# is the 9 pixels one output sees). You should see bright outlines of the object in the
# edge maps, a softened image in the blur, and in the im2col picture nine columns that are
# the same image shifted by one pixel each.

# %%
grey = host(x).mean(axis=1, keepdims=True)                                # (1, 1, 32, 32)
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
kernels = np.stack([sobel, sobel.T, np.full((3, 3), 1 / 9)])[:, None]    # (3, 1, 3, 3)
maps = conv2d_im2col(grey, kernels, np.zeros(3), padding=1)[0]          # (3, 32, 32)
cols, _, _ = im2col(grey, 3, padding=1)                                  # (1024, 9)

fig, ax = plt.subplots(1, 5, figsize=(15, 3.2))
ax[0].imshow(host(x)[0].transpose(1, 2, 0))
ax[0].set_title(f"input ({ds.classes[ds.y_test[0]]})")
for a, m, name in zip(ax[1:4], maps, ["vertical edges", "horizontal edges", "3x3 blur"]):
    a.imshow(np.abs(m) if "edges" in name else m, cmap="gray")
    a.set_title(name)
ax[4].imshow(cols[32 * 10:32 * 10 + 96], cmap="gray", aspect="auto")
ax[4].set_title("im2col rows 320-415 (9 columns)")
ax[4].set_xticks(range(9), [f"{u}{v}" for u in range(3) for v in range(3)])
ax[4].set_xlabel("kernel offset uv")
ax[4].set_ylabel("output pixel")
for a in ax[:4]:
    a.axis("off")
fig.subplots_adjust(wspace=0.3)
savefig(fig, run, "01_convolution.png")

# %% [markdown]
# **What you should see printed:** max differences around 1e-15 (float64) for im2col vs
# loops and around 1e-6 for the float32 layer — the fast code computes the definition.
#
# Next: `02_train_a_small_ann.py` trains a network made of these layers.
