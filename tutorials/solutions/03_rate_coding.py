# %% [markdown]
# # Solutions — Step 3

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import (finish, get_model, host, load_slice, setup, solved,  # noqa: E402
                     split_data)
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.runs.evaluate import ConversionConfig, snn_accuracy  # noqa: E402
from icsnn_np.io.preprocess import channel_stats, normalize  # noqa: E402
from icsnn_np.simulate import rate_encode  # noqa: E402

run = setup("Solutions to step 3")
ds = load_slice()
mean, std = channel_stats(ds.x_train)


def coded_average(img_uint8, T, seed=0, x_norm=None):
    """The time average of T steps of Bernoulli spikes of ``img_uint8`` (N, 3, H, W) (or of
    the normalised batch ``x_norm``), in [0, 1]."""
    x_norm = normalize(img_uint8, mean, std) if x_norm is None else x_norm
    coded = np.concatenate([host(rate_encode(x_norm, mean, std, t, seed)) for t in range(T)])
    bits = coded * std.reshape(1, 3, 1, 1) + mean.reshape(1, 3, 1, 1)    # (T*N, 3, H, W) 0/1
    return bits.reshape(T, len(img_uint8), *bits.shape[1:]).mean(axis=0)


# %% [markdown]
# ## Exercise 1: the rms error at T = 128
#
# Each pixel's average is a binomial proportion: variance p (1 - p) / T. The mean square
# error over the image is mean(p (1 - p)) / T, so rms = sqrt(mean(p (1 - p)) / 128).

# %%
img = ds.x_test[13:14]
p = img[0].astype(np.float64) / 255.0
predicted = np.sqrt(np.mean(p * (1 - p)) / 128)
measured = np.sqrt(np.mean((coded_average(img, 128)[0] - p) ** 2))
print(f"predicted {predicted:.4f}, measured {measured:.4f}")
assert abs(measured / predicted - 1) < 0.1
solved(1, f"rms = sqrt(mean p(1-p) / T) = {predicted:.4f} at T = 128 (measured {measured:.4f})")

# %% [markdown]
# ## Exercise 2: steps for a standard error of 0.05 at p = 0.5
#
# sqrt(p (1 - p) / T) = 0.05  =>  T = 0.25 / 0.0025 = 100. Check on a grey image (every
# pixel 0.5): the spread of the 100-step averages over its 3,072 values.

# %%
T_needed = round(0.5 * 0.5 / 0.05 ** 2)       # 100.00000000000001 in floating point
grey = np.zeros((4, 3, 32, 32), dtype=np.uint8)      # p = 0.5 exactly: normalised by hand,
x_grey = ((0.5 - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1) * np.ones(grey.shape)).astype(np.float32)
spread = coded_average(grey, T_needed, x_norm=x_grey).std()   # (normalize takes uint8 only)
print(f"T = {T_needed:.0f}: standard deviation of the averages {spread:.4f}")
assert T_needed == 100 and abs(spread - 0.05) < 0.005
solved(2, f"T = p(1-p)/0.05^2 = {T_needed:.0f} steps")

# %% [markdown]
# ## Exercise 3: direct vs rate coding at T = 8 and 32
#
# Direct coding gives the first layer the exact image at every step; its only error is the
# rounding of the IF neurons, which shrinks like 1/T (step 2). Rate coding gives it the image
# plus a noise whose standard deviation is sqrt(p (1 - p) / T) per pixel after T steps: 0.18
# for a mid-grey pixel at T = 8, only half that at T = 32 (sqrt(32/8) = 2, measured below).
# So rate coding loses more at T = 8, and it catches up *slowly*: its error shrinks like
# 1/sqrt(T), direct coding's like 1/T. On the tiny quick-mode network both are close by
# T = 32; on the bundled vgg_cpu rate coding is still far behind at T = 32 (the full run of
# step 3 prints both).

# %%
noise = {T: np.std(coded_average(ds.x_test[:20], T) - ds.x_test[:20] / 255.0) for T in (8, 32)}
print(f"input noise (std) T = 8: {noise[8]:.4f}, T = 32: {noise[32]:.4f}, ratio {noise[8] / noise[32]:.2f}")
assert abs(noise[8] / noise[32] - 2) < 0.2
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=run.pick(100, 200))
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
gap = {}
for T in (8, 32):
    accs = {c: snn_accuracy(snn, x_test, y_test, T, ConversionConfig(coding=c, batch_size=100),
                            net.mean, net.std)[0] for c in ("direct", "rate")}
    gap[T] = accs["direct"] - accs["rate"]
    print(f"T = {T}: direct {accs['direct']:.1f}%, rate {accs['rate']:.1f}%, gap {gap[T]:+.1f} points")
assert gap[8] > 0
solved(3, f"direct coding wins at T = 8 by {gap[8]:.1f} points; rate coding's noise shrinks only "
          f"like 1/sqrt(T) (gap at T = 32: {gap[32]:+.1f})")
finish(run)
