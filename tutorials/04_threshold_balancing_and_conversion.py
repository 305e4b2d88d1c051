# %% [markdown]
# # Step 4 — Threshold balancing and plain conversion
#
# **After this step you can**
#
# * convert an ANN into an SNN with `convert` and set its thresholds with
#   `balance_thresholds` (the p-quantile of each layer's ReLU outputs);
# * explain the two ways a threshold loses information (clipping above V_th, steps of
#   V_th/T below it) and choose p with that in mind;
# * measure a converted network's accuracy against T, with error bars, and see the problem
#   the paper solves: **at low T the plain SNN is far worse than the ANN**.
#
# Conversion (paper Sec. 3.1) keeps every weight and bias of the ANN and replaces every ReLU
# by a layer of IF neurons. One number per layer must still be chosen: the threshold
# V_th^l. A spike of layer l carries the value V_th^l into layer l+1
# (x^{l+1}(t) = theta^l(t) V_th^l, Sec. 3.2), and a neuron fires at most once per step, so
#
# * values **above** V_th^l are clipped (the rate cannot exceed 1), and
# * values are represented in steps of V_th^l / T, so a **too large** V_th^l wastes
#   resolution: small activations round down to zero spikes when T is small.
#
# **Threshold balancing** (the paper's choice, Sec. 3.1, citing Diehl et al. 2015, who
# balanced weights and thresholds by the *maximum* activation, and Rueckauer et al. 2017, who
# took a *percentile* instead) sets V_th^l to the p-quantile of layer l's ReLU outputs over
# training images: most values fit under the threshold, the rare outliers are clipped. The
# paper uses p in [0.9, 0.99] (Sec. 4.1.3); the package's default is p = 0.99. **The
# bundled model carries its own p = 0.9995**, chosen on 1,000 held-out training images
# (`results/p_validation.md`): on this 6-layer network 0.99 clips too much. The tutorials
# use the p stored with the model (0.9995 in full mode; the tiny quick-mode model stores
# none, so 0.99), and the figure below compares p.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np

from _common import (binomial_se, finish, get_model, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.simulate import simulate

run = setup("Step 4: threshold balancing and conversion", mode=MODE)
xp = run.xp

# %% [markdown]
# ## The ANN and the data
#
# Full mode converts the bundled `vgg_cpu` trained on CIFAR-10; quick mode a tiny 3-layer
# network trained on the slice. Calibration images (thresholds here, Alg. 2 later) are a
# seeded sample of the slice's *training* images, as `python -m icsnn_np.demo` picks them
# (`icsnn_np.runs.protocol.calibration_split`); accuracy is measured on its test images.

# %%
ds = load_slice()
net = get_model(run, ds)
n_calib, n_test = run.pick(64, 256), run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib, n_test)
ann = ann_accuracy(net.model, x_test, y_test)
print(f"ANN accuracy on {n_test} test images: {ann:.2f}% (+- {binomial_se(ann, n_test):.1f}, one "
      f"standard error); threshold quantile p = {net.p}")
result("ann_acc", ann)

# %% [markdown]
# ## What the ReLUs output
#
# `relu_outputs` runs the ANN and returns every ReLU's output. The histograms (log scale)
# show the typical shape: a spike at 0 (inactive neurons), many small values and a long
# thin tail. The vertical lines are the quantiles that could serve as threshold. The
# maximum (p = 1, Diehl et al. 2015) lies far out in the tail: using it makes almost every
# neuron fire rarely. The quantile is taken over *all* outputs, zeros included: in a layer
# where most outputs are 0, a low p such as 0.9 lands among the smallest non-zero values,
# and everything above it is clipped.

# %%
acts = relu_outputs(net.model, calib)          # list over layers of (N, C, H, W) host arrays
ps = [0.9, 0.99, 0.9995, 1.0]
L = len(acts)
ncol = min(3, L)
nrow = -(-L // ncol)
fig, ax = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.2 * nrow), squeeze=False)
for l, (a, axl) in enumerate(zip(acts, ax.ravel())):
    axl.hist(a.ravel(), bins=80, log=True, color="grey")
    for p, c in zip(ps, ["C0", "C1", "C2", "C3"]):
        axl.axvline(np.quantile(a, p), color=c, label=f"p = {p}")
    axl.set_title(f"layer {l + 1}: {(a > 0).mean():.0%} of outputs > 0")
    axl.set_xlabel("ReLU output")
    axl.set_ylabel("number of values (log scale)")
for axl in ax.ravel()[L:]:
    axl.axis("off")
ax[0, 0].legend(fontsize=7)
fig.tight_layout()
savefig(fig, run, "04_activation_histograms.png")

# %% [markdown]
# ## Convert and balance
#
# `convert` rebuilds the network with `IFNode`s in place of the ReLUs; the weight arrays are
# *shared* with the ANN, not copied. `balance_thresholds` sets each node's `v_th`.

# %%
snn = convert(net.model)
print("IF nodes:", ", ".join(n.name for n in snn.nodes))
print("weights shared with the ANN:",
      snn.nodes[0].source.params["weight"] is net.model.children["features"][0].params["weight"])
ths = balance_thresholds(snn, net.model, calib, p=net.p)
for l, th in enumerate(ths):
    print(f"layer {l + 1}: V_th = {float(th):.3f}  (max activation {acts[l].max():.3f}, "
          f"{100 * (acts[l] > float(th)).mean():.2f}% of the outputs above it)")
    result(f"v_th_layer{l + 1}", float(th))
    result(f"clipped_fraction_layer{l + 1}", (acts[l] > float(th)).mean())

# %% [markdown]
# ## Accuracy against T, and against p
#
# `snn_accuracy` simulates the SNN (direct coding: the normalised image is the constant
# input current of the first layer at every step) and takes the argmax of the time-averaged
# output layer. Left: accuracy against T at the model's p. You should see it far below the
# ANN at small T and climbing towards it as T grows. Right: other quantiles at a small and
# a larger T. The maximum (p = 1) loses at low T, because a large threshold makes every step
# V_th/T coarse; a low p loses at every T, because it clips too much, and clipping does not
# shrink with T. Error bars: one binomial standard error, sqrt(a (1 - a)/n).

# %%
Ts = run.pick([2, 4, 8, 32], [8, 16, 32, 64], in_class=[8, 16, 32])
cfg = ConversionConfig(batch_size=100)
accs = {}
for T in Ts:
    acc, rate = snn_accuracy(snn, x_test, y_test, T, cfg)
    accs[T] = acc
    print(f"T = {T:4d}: SNN accuracy {acc:6.2f}%  (ANN {ann:.2f}%)  mean firing rate {rate:.3f}")
    result(f"snn_acc_T{T}", acc)

T_p = run.pick([4, 16], [8, 32], in_class=[8, 32])
p_grid = sorted(run.pick({0.9, 0.99, 0.999, 1.0, net.p}, {0.9, 0.99, 0.999, 1.0, net.p},
                         in_class={0.9, 0.99, 1.0, net.p}))
acc_p = {}
for p in p_grid:
    balance_thresholds(snn, net.model, calib, p=p)
    for T in T_p:
        acc_p[p, T] = accs[T] if (p == net.p and T in accs) else snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        print(f"p = {p}: T = {T}: {acc_p[p, T]:.2f}%")
        result(f"snn_acc_p{p}_T{T}", acc_p[p, T])
balance_thresholds(snn, net.model, calib, p=net.p)     # back to the model's p

fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
ax[0].axhline(ann, color="k", ls="--", label="ANN")
ax[0].errorbar(Ts, [accs[T] for T in Ts], yerr=binomial_se([accs[T] for T in Ts], n_test),
               fmt="o-", capsize=3, label=f"SNN, p = {net.p}")
ax[0].set_xscale("log", base=2)
ax[0].set_xticks(Ts, [str(T) for T in Ts])
ax[0].set_xlabel("time steps T")
ax[0].set_ylabel(f"test accuracy (%), {n_test} images")
ax[0].set_title("plain conversion: accuracy collapses at low T")
ax[0].legend(fontsize=8)
for T, m in zip(T_p, ["s-", "^-"]):
    vals = [acc_p[p, T] for p in p_grid]
    ax[1].errorbar(range(len(p_grid)), vals, yerr=binomial_se(vals, n_test), fmt=m, capsize=3,
                   label=f"SNN, T = {T}")
ax[1].axhline(ann, color="k", ls="--", label="ANN")
ax[1].set_xticks(range(len(p_grid)), [str(p) for p in p_grid])
ax[1].set_xlabel("threshold quantile p")
ax[1].set_ylabel(f"test accuracy (%), {n_test} images")
ax[1].set_title("the quantile p: clipping against resolution")
ax[1].legend(fontsize=8)
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
x_few = x_test[:run.pick(20, 50, in_class=20)]
ann_means = [a.mean() for a in relu_outputs(net.model, [x_few])]
T_sig = run.pick([4, 16, 64], [8, 32, 128], in_class=[8, 32])
ratios = {}
fig, ax = plt.subplots(figsize=(6.5, 4))
for T in T_sig:
    rec = simulate(snn, x_few, T, record=True).layers
    ratios[T] = [rec[l]["decoded"].mean() / ann_means[l] for l in range(L)]
    ax.plot(range(1, L + 1), ratios[T], "o-", label=f"T = {T}")
    result(f"decoded_over_ann_last_layer_T{T}", ratios[T][-1])
ax.axhline(1, color="k", ls="--")
ax.set_xticks(range(1, L + 1))
ax.set_xlabel("layer")
ax.set_ylabel("mean SNN output / mean ANN output")
ax.set_title("how much of each layer's signal gets through in T steps")
ax.legend()
fig.tight_layout()
savefig(fig, run, "04_signal_per_layer.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/04_threshold_balancing_and_conversion.py`.
#
# 1. **Predict** what fraction of a layer's calibration outputs lies above its threshold
#    V_th = p-quantile, then compare with the printed fractions. Would it be the same on
#    test images?
# 2. **Predict**: in a layer where 85 % of the ReLU outputs are 0, where does the
#    0.9-quantile lie? What does that do to a threshold chosen with the paper's smallest p?
# 3. **Change** p to 1 (the maximum) and predict, before measuring, whether the plain SNN
#    gets better or worse at T = 8, and at T = 64.
#
# ## What you should see

# %%
see("thresholds lie far below the largest activations",
    all(float(th) < a.max() for th, a in zip(ths, acts)))
see("the plain SNN loses most at the smallest T and recovers as T grows",
    ann - accs[Ts[0]] > ann - accs[Ts[-1]] + 2 * binomial_se(ann, n_test),
    f"loss {ann - accs[Ts[0]]:.1f} points at T = {Ts[0]}, {ann - accs[Ts[-1]]:.1f} at T = {Ts[-1]}")
see("at small T the deepest layer passes less of its signal than the first",
    ratios[T_sig[0]][-1] < ratios[T_sig[0]][0],
    f"ratio {ratios[T_sig[0]][0]:.2f} in layer 1, {ratios[T_sig[0]][-1]:.2f} in layer {L}, T = {T_sig[0]}")
see("p = 1 (the maximum) is worse than the model's p at the smallest T",
    acc_p[1.0, T_p[0]] < acc_p[net.p, T_p[0]],
    f"{acc_p[1.0, T_p[0]]:.1f}% vs {acc_p[net.p, T_p[0]]:.1f}% at T = {T_p[0]}")
finish(run)

# %% [markdown]
# Next: `05_error_term_and_initial_potential.py`, where exactly the lost signal goes.
