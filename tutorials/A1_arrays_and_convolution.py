# %% [markdown]
# # Appendix A1 (optional) — Arrays, backends and a convolution written by hand
#
# This appendix is not needed for the conversion story (steps 0-9); read it when you want to
# know what the layers under the ANN do, or what the package's fast engine changes.
#
# **After this appendix you can**
#
# * hold a batch of images as an `(N, C, H, W)` array and move it between NumPy and CuPy
#   with `get_xp`, `to_device`, `to_host`;
# * write a convolution as four loops and as *im2col + one matrix product*, and show that
#   they agree to float rounding;
# * say what the fast engine (`icsnn_np/fast/`) changes (Winograd F(4x4, 3x3), channels-last
#   buffers, threads) and check it against the teaching path: the same spikes.
#
# Run: `python tutorials/A1_arrays_and_convolution.py --quick` (seconds, a smoke test),
# `--class` (a lecture; the same as full mode here, a second or two) or `--full`.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import time

import matplotlib.pyplot as plt
import numpy as np

from _common import (finish, get_model, host, load_slice, result, savefig, see, setup,
                     split_data)
from icsnn_np.backend import to_device, to_host
from icsnn_np.layers import AvgPool2d, Conv2d
from icsnn_np.testing.reference import conv2d_naive

run = setup("Appendix A1: arrays, backends and convolution", mode=MODE)
xp = run.xp                  # numpy, or cupy with --backend cupy

# %% [markdown]
# ## Arrays: a real CIFAR-10 image
#
# The package bundles a slice of CIFAR-10 (1,000 training + 1,000 test images). Images are
# `uint8` in `(N, 3, 32, 32)`: channel planes R, G, B, each 32 x 32 pixels. Every function
# of the package takes an *array module* `xp` (`numpy` or `cupy`) instead of importing one;
# `to_device` / `to_host` move data at the edges (no-ops on NumPy).

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
# `icsnn_np.testing.reference.conv2d_naive` is exactly this, with Python loops over n, o, i, j. It is
# slow, and obviously right.
#
# ## im2col: every patch becomes a row
#
# Collect, for every output pixel `(n, i, j)`, the `C*k*k` input values its kernel sees into
# one row. The convolution is then `cols @ W.reshape(O, C*k*k).T`: one matrix product
# (GEMM). We loop over the `k*k` kernel offsets only (9 copies for a 3x3 kernel), never
# over pixels. (`icsnn_np.layers.im2col` is the same with the transposed layout, one
# *column* per output pixel.)

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
# Random inputs and weights in float64, a padded and a strided case: the largest absolute
# difference should be around 1e-15 (float64 rounding). The package's `Conv2d` layer (the
# same im2col + one GEMM, `icsnn_np/layers.py`) is checked too, in float32 (~1e-6).

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
y_layer = to_host(layer.forward(to_device(xr.astype(np.float32), xp)))   # device -> host: sync point
diff_layer = float(np.abs(y_layer - conv2d_naive(xr, wr, br, 1, 1)).max())
print(f"icsnn_np.layers.Conv2d (float32) vs naive: max diff {diff_layer:.2e}")
result("conv_layer_vs_naive_maxdiff", diff_layer)

pool = AvgPool2d(2)
N_, C_, H_, W_ = xr.shape                        # a 2x2 average, written the obvious way:
by_hand = xr.reshape(N_, C_, H_ // 2, 2, W_ // 2, 2).mean(axis=(3, 5))    # each 2x2 block's mean
diff_pool = float(np.abs(to_host(pool.forward(to_device(xr, xp))) - by_hand).max())
print(f"AvgPool2d vs naive: max diff {diff_pool:.2e}")
result("avgpool_vs_naive_maxdiff", diff_pool)

# %% [markdown]
# ## The fast engine: Winograd's minimal filtering
#
# im2col spends 9 multiplies per output and input channel on a 3x3 filter. Winograd's
# algorithm F(4, 3) gets 4 outputs of a 3-tap filter from 6 inputs with only 6 multiplies:
# transform the 6 inputs (`B^T d`) and the 3 taps (`G g`), multiply elementwise, transform
# back (`A^T`). In 2-D, F(4x4, 3x3) needs 36 multiplies for 16 outputs instead of 144.
# The fast engine (`icsnn_np/fast/winograd.py`) uses it for 3x3 stride-1 'same' convolutions
# with >= 16 input channels. Below: the 1-D identity on one tile, then the fast layer in
# float64 against the loops. Its transforms add and subtract values up to 8x larger than
# the output, so in float32 it rounds more than im2col (~1e-6 of the output instead of 1e-7).

# %%
from icsnn_np.fast import winograd  # noqa: E402
from icsnn_np.fast.layers import twin  # noqa: E402

d, g = rng.normal(size=6), rng.normal(size=3)                    # 6 inputs, 3 taps
y_wino = winograd.A_T @ ((winograd.G @ g) * (winograd.B_T @ d))  # 6 multiplies
y_def = np.array([d[i:i + 3] @ g for i in range(4)])             # 12 multiplies
print("1-D F(4,3):", np.round(y_wino, 6), " definition:", np.round(y_def, 6))

wide = twin(Conv2d(16, 8, 3, stride=1, padding=1, dtype=np.float64))   # the fast conv, Winograd
x16 = rng.normal(size=(2, 16, 9, 11))
diff_wino = float(np.abs(wide.forward(x16) - conv2d_naive(x16, wide.params["weight"],
                                                          wide.params["bias"], 1, 1)).max())
print(f"FastConv2d (Winograd: {wide.uses_winograd()}, float64) vs naive: max diff {diff_wino:.2e}")
result("winograd_vs_naive_maxdiff", diff_wino)

# %% [markdown]
# ## The fast engine against the teaching simulation
#
# `simulate(snn, x, T)` runs the teaching path: every time step, the whole network once
# (`icsnn_np/simulate.py`). `simulator("fast")` (`icsnn_np/runs/engine.py`, the one place an
# engine is chosen) runs the same network layer by layer over
# chunks of time steps, with Winograd convolutions and threads. Both must give the same
# spikes; the membrane potentials differ by float32 rounding (a different order of
# additions). A potential that lands within rounding of the threshold could in principle
# spike in one and not the other; here we count.

# %%
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.runs.engine import simulator  # noqa: E402

net = get_model(run, ds)
calib, x_test, _ = split_data(run, ds, net, n_calib=64, n_test=run.pick(10, 20))
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
timing = {}
for engine in ("reference", "fast"):
    t0 = time.perf_counter()
    timing[engine] = (simulator(engine)(snn, x_test, 16, record=True), time.perf_counter() - t0)
(ref_res, t_ref), (fast_res, t_fast) = timing["reference"], timing["fast"]
same = np.mean([(a["spike_count"] == b["spike_count"]).mean()
                for a, b in zip(ref_res.layers, fast_res.layers)])
dv = max(np.abs(a["v_T"] - b["v_T"]).max() for a, b in zip(ref_res.layers, fast_res.layers))
print(f"{net.name}, {len(x_test)} images, T = 16: identical spike counts for {100 * same:.3f}% "
      f"of the neurons; max |v(T) difference| {dv:.1e}; reference {t_ref:.2f} s, fast {t_fast:.2f} s")
result("fast_vs_reference_same_spikes", same)
result("fast_vs_reference_max_dv", dv)

# %% [markdown]
# ## Seeing it: three hand-made filters on a real image
#
# A convolution with a 3x3 kernel compares each pixel with its neighbours. Below: a
# vertical-edge and a horizontal-edge detector (Sobel) and a blur, applied with our
# `conv2d_im2col` to the grey-level image, and below them a piece of the im2col matrix
# itself, transposed to fit the page: each *column* is one output pixel (here 96 of them,
# image rows 10-12), each of the nine rows one kernel offset (u, v), so a column holds the
# 9 pixels that output sees. You should see bright outlines of the object in the edge maps,
# a softened image in the blur, and in the im2col picture nine rows that are the same strip
# of the image shifted by one pixel each.

# %%
grey = host(x).mean(axis=1, keepdims=True)                                # (1, 1, 32, 32)
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
kernels = np.stack([sobel, sobel.T, np.full((3, 3), 1 / 9)])[:, None]    # (3, 1, 3, 3)
maps = conv2d_im2col(grey, kernels, np.zeros(3), padding=1)[0]          # (3, 32, 32)
cols, _, _ = im2col(grey, 3, padding=1)                                  # (1024, 9)

fig = plt.figure(figsize=(15, 6.6))
grid = fig.add_gridspec(2, 4, height_ratios=[1.25, 1], hspace=0.35, wspace=0.25)
ax = [fig.add_subplot(grid[0, k]) for k in range(4)] + [fig.add_subplot(grid[1, :])]
ax[0].imshow(host(x)[0].transpose(1, 2, 0))
ax[0].set_title(f"input ({ds.classes[ds.y_test[0]]}), 32 x 32")
for a, m, name in zip(ax[1:4], maps, ["vertical edges", "horizontal edges", "3x3 blur"]):
    edges = "edges" in name
    im = a.imshow(np.abs(m) if edges else m, cmap="gray")
    fig.colorbar(im, ax=a, fraction=0.046, pad=0.03,
                 label="|Sobel response| (grey levels)" if edges else "grey level (0-1)")
    a.set_title(name)
for a in ax[:4]:
    a.axis("off")
im = ax[4].imshow(cols[32 * 10:32 * 10 + 96].T, cmap="gray", aspect="auto", vmin=0, vmax=1)
fig.colorbar(im, ax=ax[4], fraction=0.02, pad=0.01, label="grey level (0-1)")
ax[4].set_title("a piece of the im2col matrix, transposed: one column per output pixel "
                "(rows 10-12 of the image), one row per kernel offset")
ax[4].set_yticks(range(9), [f"(u, v) = ({u}, {v})" for u in range(3) for v in range(3)])
ax[4].set_xticks(range(0, 97, 16), [str(320 + k) for k in range(0, 97, 16)])
ax[4].set_xlabel("output pixel (index = 32 x image row + column)")
savefig(fig, run, "A1_convolution.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/A1_arrays_and_convolution.py`.
#
# 1. **Predict** the output size of a 3x3 convolution with stride 2 and no padding on a
#    32 x 32 image, then check it with `Conv2d`.
# 2. **Count** the multiplies for one 4 x 4 output tile and one (input, output) channel pair:
#    direct convolution against Winograd F(4x4, 3x3). Where does the 36 come from in
#    `icsnn_np/fast/winograd.py`?
# 3. **Change** the check above to T = 64 steps. Do the two engines still agree on every
#    spike? Why could they, in principle, disagree?
#
# ## What you should see

# %%
see("im2col computes the definition (float64 rounding only)", worst < 1e-10, f"max diff {worst:.1e}")
see("Winograd computes the definition too (float64)", diff_wino < 1e-10, f"max diff {diff_wino:.1e}")
see("the fast engine gives the teaching simulation's spikes", same == 1.0,
    f"{100 * same:.3f}% identical spike counts")
finish(run)
