# %% [markdown]
# # Step 3 — Feeding images to an SNN: direct and rate coding
#
# **After this step you can**
#
# * tell *direct* coding (the image is a constant input current) from *rate* coding (the
#   image becomes random spikes), and say which one the package and the paper use;
# * predict the noise of a rate-coded image after T steps, sqrt(p(1 - p)/T), and check it;
# * measure what each coding costs a converted network at small T.
#
# The first layer of the SNN needs an input at every step. Two ways:
#
# * **direct coding** (the package's default, `coding="direct"`): the normalised image is
#   the first layer's input at every step, a constant current. The first IF layer then does
#   the rate coding itself, and no randomness enters. Most conversion work uses it.
# * **rate coding** (`coding="rate"`): each pixel of intensity p in [0, 1] sends a spike at
#   each step with probability p, so the spikes average to the image only over many steps.
#   The paper says it uses "rate encoding" and shows rate-coded images (its Fig. 3), but does
#   not say how the spikes are drawn. **Bernoulli sampling is our choice**
#   (`icsnn_np.simulate.rate_encode`, seeded, so every run draws the same spikes).
#
# The ANN was trained on normalised images (x/255 - mean)/std, which have both signs, and a
# spike cannot be negative. So `rate_encode` draws spikes s(t) from the raw intensity and
# feeds the first layer (s(t) - mean)/std: its time average tends to the normalised image.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np

from _common import (binomial_se, fig_to_array, finish, get_model, host, load_slice, result,
                     save_gif, savefig, see, setup, split_data)
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.io.preprocess import channel_stats, normalize
from icsnn_np.simulate import rate_encode

run = setup("Step 3: direct and rate coding", mode=MODE)
xp = run.xp

# %% [markdown]
# ## Rate-coded images (the paper's Fig. 3)
#
# Averaging the spikes of T steps gives back the image, with a noise of standard deviation
# sqrt(p (1 - p) / T) per pixel (a binomial proportion). We undo the normalisation of
# `rate_encode`'s output to show the spikes. You should see a single time step as a speckle
# of saturated colours, a grainy image at T = 32, and at T = 1024 an image very close to the
# original: at low T the coding itself loses information.

# %%
ds = load_slice()
mean, std = channel_stats(ds.x_train)
idx = 13                                                    # a white horse from the test set
img = ds.x_test[idx:idx + 1]                                 # uint8 (1, 3, 32, 32)
x = normalize(img, mean, std, xp)
p = img[0].astype(np.float64) / 255.0                        # (3, 32, 32) intensity
panels, rmse = [("original", p)], {}
for T in [1, 32, 128, 1024]:
    coded = np.concatenate([host(rate_encode(x, mean, std, t, seed=0)) for t in range(T)])  # (T, 3, 32, 32)
    bits = coded * std.reshape(1, 3, 1, 1) + mean.reshape(1, 3, 1, 1)  # back to 0 / 1 spikes
    avg = bits.mean(axis=0)
    rmse[T] = float(np.sqrt(np.mean((avg - p) ** 2)))
    expect = float(np.sqrt(np.mean(p * (1 - p)) / T))
    print(f"T = {T:5d}: rms error of the time-averaged image {rmse[T]:.4f} "
          f"(Bernoulli theory sqrt(mean p(1-p) / T): {expect:.4f})")
    result(f"rate_code_rmse_T{T}", rmse[T])
    result(f"rate_code_theory_T{T}", expect)
    panels.append(("1 step (spikes)" if T == 1 else f"T = {T}", avg))

fig, ax = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
for a, (title, im) in zip(ax, panels):
    a.imshow(np.clip(im.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    a.set_title(title)
    a.axis("off")
fig.suptitle(f"rate coding of a CIFAR-10 {ds.classes[ds.y_test[idx]]} (paper Fig. 3)")
fig.tight_layout()
savefig(fig, run, "03_rate_coded_images.png")

# %% [markdown]
# ## The same, as it happens (an animation)
#
# Left, the spikes of step t; middle, the average of the first t steps; right, the image.
# Each pixel has three channels (R, G, B) and each channel spikes on its own, so a pixel of
# the spike picture has one of eight colours: black (no channel spiked), red, green or blue
# (one), yellow, magenta or cyan (two), white (all three); the key on the far right. The
# frames show t = 1, 2, 3, 4, 6, 8, ... (each frame roughly 1.4x the last): the average
# sharpens like 1/sqrt(t).

# %%
steps = run.pick([1, 2, 4, 8], [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64])
coded = np.concatenate([host(rate_encode(x, mean, std, t, seed=0)) for t in range(steps[-1])])
bits = coded * std.reshape(1, 3, 1, 1) + mean.reshape(1, 3, 1, 1)         # (T, 3, 32, 32) 0/1
KEY = [((0, 0, 0), "none"), ((1, 0, 0), "R"), ((0, 1, 0), "G"), ((0, 0, 1), "B"),
       ((1, 1, 0), "R+G"), ((1, 0, 1), "R+B"), ((0, 1, 1), "G+B"), ((1, 1, 1), "R+G+B")]
frames = []
for t in steps:
    fig, ax = plt.subplots(1, 4, figsize=(11, 3.4), dpi=90,
                           gridspec_kw={"width_ratios": [1, 1, 1, 0.55]})
    for a, im, title in zip(ax, [bits[t - 1], bits[:t].mean(axis=0), p],
                            [f"spikes at step t = {t}", f"average of steps 1..{t}", "the image"]):
        a.imshow(np.clip(im.transpose(1, 2, 0), 0, 1), interpolation="nearest")
        a.set_title(title, fontsize=12)
        a.axis("off")
    ax[3].imshow(np.array([c for c, _ in KEY], float)[:, None, :], aspect=0.5)
    ax[3].set_yticks(range(len(KEY)), [name for _, name in KEY], fontsize=9)
    ax[3].yaxis.tick_right()
    ax[3].set_xticks([])
    ax[3].set_title("channels that\nspiked (left)", fontsize=10)
    fig.suptitle(f"rate coding of a {ds.classes[ds.y_test[idx]]}: each channel of each pixel "
                 f"spikes with probability = its intensity", fontsize=11)
    fig.tight_layout()
    frames.append(fig_to_array(fig))
    plt.close(fig)
save_gif(frames, run, "03_rate_coding.gif", ms_per_frame=400)

# %% [markdown]
# ## What each coding costs a converted network
#
# Now a whole network: convert the model (steps 4-5 explain how; here we just use it) and
# measure its test accuracy with each coding at two values of T. Direct coding feeds the
# exact image; rate coding adds the noise above to the first layer's input: after
# normalisation a pixel's spike is a current of about +2 and its silence about -2 (in units
# of the normalised image), so the first layer's potentials swing far more than with a
# constant current, and what is left in them at the end is larger. Error bars are
# one binomial standard error, sqrt(a (1 - a) / n) for an accuracy a on n images: two
# numbers closer than about two of these could differ by chance.

# %%
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=run.pick(100, 200))
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
ann = ann_accuracy(net.model, x_test, y_test)
result("ann_acc", ann)
Ts = run.pick([8, 32], [8, 32])
acc = {}
for coding in ("direct", "rate"):
    cfg = ConversionConfig(coding=coding, batch_size=100)
    for T in Ts:
        acc[coding, T] = snn_accuracy(snn, x_test, y_test, T, cfg, net.mean, net.std)[0]
        print(f"{coding:6s} coding, T = {T:3d}: {acc[coding, T]:6.2f}% "
              f"(+- {binomial_se(acc[coding, T], len(x_test)):.1f}), ANN {ann:.2f}%")
        result(f"acc_{coding}_T{T}", acc[coding, T])

fig, ax = plt.subplots(figsize=(6, 4))
w = 0.35
for j, coding in enumerate(("direct", "rate")):
    vals = [acc[coding, T] for T in Ts]
    ax.bar(np.arange(len(Ts)) + (j - 0.5) * w, vals, w, yerr=binomial_se(vals, len(x_test)),
           capsize=4, label=f"{coding} coding")
ax.axhline(ann, color="k", ls="--", label="ANN")
ax.set_xticks(np.arange(len(Ts)), [f"T = {T}" for T in Ts])
ax.set_ylabel(f"test accuracy (%), {len(x_test)} images")
ax.set_title(f"{net.name}: direct vs rate coding (error bars: 1 s.e.)")
ax.set_ylim(0, 112)                          # room for the legend above the bars
ax.legend(fontsize=8, loc="upper center", ncol=3)
fig.tight_layout()
savefig(fig, run, "03_direct_vs_rate.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/03_rate_coding.py`.
#
# 1. **Predict** the rms error of the rate-coded horse at T = 128 from the formula before
#    looking at the printed value.
# 2. **Derive** how many steps a pixel of intensity p = 0.5 needs for one standard error of
#    its rate-coded value to be 0.05. Check by coding many such pixels.
# 3. **Predict** which coding loses more accuracy at T = 8, and whether rate coding catches
#    up by T = 32. (Hint: how fast does each coding's error shrink with T?)
#
# ## What you should see

# %%
see("the rate-coded image's error shrinks like 1/sqrt(T)", rmse[32] > rmse[128] > rmse[1024],
    f"rms {rmse[32]:.3f} / {rmse[128]:.3f} / {rmse[1024]:.3f} at T = 32 / 128 / 1024")
see("the measured error matches the Bernoulli formula to within 10 %",
    all(abs(rmse[T] / np.sqrt(np.mean(p * (1 - p)) / T) - 1) < 0.1 for T in (32, 128, 1024)))
see("rate coding costs accuracy at T = 8 (direct coding is better)",
    acc["direct", 8] > acc["rate", 8], f"{acc['direct', 8]:.1f}% vs {acc['rate', 8]:.1f}%")
finish(run)

# %% [markdown]
# Next: `04_threshold_balancing_and_conversion.py` turns a whole ANN into an SNN.
