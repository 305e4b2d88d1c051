# %% [markdown]
# # Step 4 — Threshold balancing and plain conversion
#
# Conversion (paper Sec. 3.1) keeps every weight and bias of the ANN and replaces every ReLU
# by a layer of IF neurons. One number per layer must still be chosen: the threshold
# V_th^l. A spike of layer l carries the value V_th^l into layer l+1, and a neuron fires at
# most once per step, so
#
# * values **above** V_th^l are clipped (the rate cannot exceed 1), and
# * values are represented in steps of V_th^l / T, so a **too large** V_th^l wastes
#   resolution: small activations round down to zero spikes when T is small.
#
# **Threshold balancing** (Rueckauer et al. 2017, the paper's choice) sets V_th^l to the
# p-quantile of layer l's ReLU outputs over training images, p in 0.9-0.99: most values fit
# under the threshold, the rare outliers are clipped.
#
# Then we simulate the converted network for T steps and measure its accuracy. You will see
# the problem the paper solves: **at low T the plain SNN is far worse than the ANN.**

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from _common import get_model, host, load_slice, result, savefig, setup, split
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.data import normalize
from icsnn_np.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.simulate import simulate

run = setup("Step 4: threshold balancing and conversion")
xp = run.xp
t_start = time.perf_counter()

# %% [markdown]
# ## The ANN and the data
#
# Full mode converts the bundled `vgg_cpu` trained on CIFAR-10; quick mode a tiny network
# trained for a few seconds. Calibration images (thresholds, and later Alg. 2) come from
# the slice's training images; accuracy is measured on its test images.

# %%
ds = load_slice()
model, mean, std = get_model(run, ds)
n_test, n_calib = run.pick(100, 300), run.pick(64, 256)
x_calib = normalize(ds.x_train[:n_calib], mean, std, xp)
x_test = normalize(ds.x_test[:n_test], mean, std, xp)
y_test = ds.y_test[:n_test]
calib = split(x_calib, 128)
ann = ann_accuracy(model, x_test, y_test)
print(f"ANN accuracy on {n_test} test images: {ann:.2f}%")
result("ann_acc", ann)

# %% [markdown]
# ## What the ReLUs output
#
# `relu_outputs` runs the ANN and returns every ReLU's output. The histograms (log scale)
# show the typical shape: a spike at 0 (inactive neurons), many small values and a long
# thin tail. The vertical lines are the quantiles that could serve as threshold. The
# maximum lies far out in the tail: using it (Diehl et al. 2015) would make almost every
# neuron fire rarely. The quantile is taken over *all* outputs, zeros included: in a layer
# where most outputs are 0, a low p such as 0.9 lands among the smallest non-zero values,
# and everything above it would be clipped.

# %%
acts = relu_outputs(model, calib)            # list over layers of (N, C, H, W) host arrays
ps = [0.9, 0.99, 0.999, 1.0]
n_layers = len(acts)
ncol = min(3, n_layers)
nrow = -(-n_layers // ncol)
fig, ax = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
ax = ax.reshape(1, -1)
for l, (a, axl) in enumerate(zip(acts, ax[0])):
    axl.hist(a.ravel(), bins=80, log=True, color="grey")
    for p, c in zip(ps, ["C0", "C1", "C2", "C3"]):
        axl.axvline(np.quantile(a, p), color=c, label=f"p = {p}")
    axl.set_title(f"layer {l + 1}: {(a > 0).mean():.0%} active")
    axl.set_xlabel("ReLU output")
ax[0, 0].legend(fontsize=7)
fig.tight_layout()
savefig(fig, run, "04_activation_histograms.png")

# %% [markdown]
# ## Convert and balance
#
# `convert` rebuilds the network with `IFNode`s in place of the ReLUs; the weight arrays are
# *shared* with the ANN, not copied. `balance_thresholds` sets each node's `v_th`.

# %%
snn = convert(model)
print("IF nodes:", ", ".join(n.name for n in snn.nodes))
print("weights shared with the ANN:",
      snn.nodes[0].source.params["weight"] is model.children["features"][0].params["weight"])
ths = balance_thresholds(snn, model, calib, p=0.99, xp=xp)
for l, th in enumerate(ths):
    print(f"layer {l + 1}: V_th = {float(th):.3f}  (max activation {acts[l].max():.3f})")
    result(f"v_th_layer{l + 1}", float(th))

# %% [markdown]
# ## Accuracy against T
#
# `snn_accuracy` simulates the SNN (direct coding: the normalised image is the constant
# input current of the first layer at every step) and takes the argmax of the time-averaged
# output layer. You should see accuracy far below the ANN at small T, climbing towards it
# as T grows. The dotted curves use other quantiles p at two values of T: the maximum
# (p = 1) loses at low T, because a large threshold makes every step V_th/T coarse; a low p
# loses at every T, because it clips too much, and clipping does not shrink with T. The
# best p depends on the network: look at the numbers rather than trusting a default.

# %%
Ts = run.pick([4, 8, 16, 32, 64], [8, 16, 32, 64, 128])
cfg = ConversionConfig(batch_size=100)
accs = {}
for T in Ts:
    acc, rate = snn_accuracy(snn, x_test, y_test, T, cfg)
    accs[T] = acc
    print(f"T = {T:4d}: SNN accuracy {acc:6.2f}%  (ANN {ann:.2f}%)  mean firing rate {rate:.3f}")
    result(f"snn_acc_T{T}", acc)

T_p = run.pick([8, 32], [16, 64])
acc_p = {}
for p in [0.9, 0.999, 1.0]:
    balance_thresholds(snn, model, calib, p=p, xp=xp)
    for T in T_p:
        acc_p[p, T] = snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        print(f"p = {p}: T = {T}: {acc_p[p, T]:.2f}%")
        result(f"snn_acc_p{p}_T{T}", acc_p[p, T])
balance_thresholds(snn, model, calib, p=0.99, xp=xp)     # back to the default

fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.axhline(ann, color="k", ls="--", label="ANN")
ax.plot(Ts, [accs[T] for T in Ts], "o-", label="SNN, p = 0.99")
for p, m in zip([0.9, 0.999, 1.0], ["s", "^", "v"]):
    ax.plot(T_p, [acc_p[p, T] for T in T_p], m + ":", label=f"SNN, p = {p}")
ax.set_xscale("log", base=2)
ax.set_xticks(Ts, [str(T) for T in Ts])
ax.set_xlabel("time steps T")
ax.set_ylabel("test accuracy (%)")
ax.set_title("plain conversion: accuracy collapses at low T")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "04_accuracy_vs_T.png")

# %% [markdown]
# ## Why it collapses: the signal fades layer by layer
#
# Compare, per layer, the mean decoded SNN output (spike count x V_th / T, the `decoded`
# record of `simulate(..., record=True)`) with the mean ANN ReLU output on the same images.
# At large T the ratio is highest (below 1: what lies above V_th is clipped at any T). At
# small T it drops with depth: each neuron starts at v(0) = 0 and needs several steps of
# input before its first spike, and every layer waits for the one before it, so deep
# layers have spent much of the short window silent. The next step makes this exact with
# Eq. 11.

# %%
x_few = x_test[:run.pick(20, 50)]
ann_means = [a.mean() for a in relu_outputs(model, [x_few])]
fig, ax = plt.subplots(figsize=(6.5, 4))
for T in run.pick([4, 16, 64], [8, 32, 128]):
    rec = simulate(snn, x_few, T, record=True).layers
    ratio = [rec[l]["decoded"].mean() / ann_means[l] for l in range(n_layers)]
    ax.plot(range(1, n_layers + 1), ratio, "o-", label=f"T = {T}")
    result(f"decoded_over_ann_last_layer_T{T}", ratio[-1])
ax.axhline(1, color="k", ls="--")
ax.set_xticks(range(1, n_layers + 1))
ax.set_xlabel("layer")
ax.set_ylabel("mean SNN output / mean ANN output")
ax.set_title("how much of each layer's signal gets through in T steps")
ax.legend()
fig.tight_layout()
savefig(fig, run, "04_signal_per_layer.png")
print(f"done in {time.perf_counter() - t_start:.0f}s")

# %% [markdown]
# **What you should see:** thresholds of the order of the activations' upper tail, far below
# their maxima; SNN accuracy well under the ANN's at the smallest T and close to it at the
# largest; and a signal ratio that falls with depth at small T.
#
# Next: `05_error_term_and_initial_potential.py` — where exactly the lost signal goes.
