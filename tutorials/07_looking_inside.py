# %% [markdown]
# # Step 7 — Looking inside: the paper's Figs. 5, 6 and 7
#
# **After this step you can**
#
# * measure the paper's four variants (SNN, I-SNN, C-SNN, IC-SNN) against T and compare
#   them with its Table 2, error bars included;
# * read a spike raster and a first-spike plot, and say why a good v(0) makes every layer
#   start sending information at once;
# * compare a layer's decoded SNN output with the ANN's, neuron by neuron.
#
# The last step regenerates the paper's three experimental figures on our network:
#
# * **Fig. 5**: accuracy against T for the ANN, the plain SNN, I-SNN (Alg. 2), C-SNN
#   (compensation) and IC-SNN (Alg. 3).
# * **Fig. 6**: *when* neurons first fire, layer by layer (`first_spike` records), and a
#   spike raster of one layer: a neuron that starts at v(0) = 0 needs several steps of input
#   before its first spike, and the delays add up with depth.
# * **Fig. 7**: the *values* each layer outputs: the ANN's ReLU outputs against the decoded
#   outputs of SNN and IC-SNN (spike count x V_th / T) in layers 1 and 3.
#
# Settings: the package defaults (Alg. 2 reading `remainder`, compensation `literal`, one
# v(0) per layer, direct coding; `variants.calibrate_variant` sets v(0) by the variant's
# name) and the model's threshold quantile p (step 4). The paper rate-codes its inputs and
# reads Alg. 2 differently (steps 3 and 5): compare shapes, not decimals.

# %%
import matplotlib.pyplot as plt
import numpy as np

from _common import (binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.simulate import simulate
from icsnn_np.variants import PAPER_VARIANTS, VARIANTS, calibrate_variant

run = setup("Step 7: looking inside (Figs. 5, 6, 7)")
xp = run.xp

ds = load_slice()
net = get_model(run, ds)
n_test = run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=n_test)
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p, xp=xp)
L = len(snn.nodes)

# %% [markdown]
# ## Fig. 5: accuracy against T
#
# For every T, each variant is calibrated for that T (`calibrate_variant`) and measured
# (`snn_accuracy`). This loop is what `evaluate_conversion` does, the function behind
# `python -m icsnn_np.demo` and the README's tables; we write it out to keep each v(0) for
# Figs. 6 and 7. Right: the loss (ANN - SNN, points) next to the paper's Table 2 (VGG16 on
# CIFAR-10, ANN 92.09 %). You should see the plain SNN lowest at small T, I-SNN and IC-SNN
# far above it, and all curves approaching the ANN as T grows. C-SNN with the compensation
# as printed (V_th/(2T)) gains little over the plain SNN (step 6).

# %%
Ts = run.pick([4, 8, 16], [8, 16, 32])
PAPER_T2 = {"i-snn": [22.28, 8.14, 1.72], "c-snn": [28.52, 12.06, 5.25],   # Table 2, T = 8, 16, 32
            "ic-snn": [9.95, 2.97, 1.03]}
cfg = ConversionConfig(batch_size=100)
ann = ann_accuracy(net.model, x_test, y_test)
result("ann_acc", ann)
acc, v0s = {}, {}
for T in Ts:
    for v in PAPER_VARIANTS:
        v0s[v, T] = calibrate_variant(snn, v, T, calib)
        acc[v, T] = snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        print(f"T = {T:3d} {VARIANTS[v].label:7s} accuracy {acc[v, T]:6.2f}%  loss {ann - acc[v, T]:6.2f}"
              f"   ({VARIANTS[v].summary})")
        result(f"fig5_acc_{v}_T{T}", acc[v, T])

colors = {"snn": "k", "i-snn": "C0", "c-snn": "C1", "ic-snn": "C3"}
fig, ax = plt.subplots(1, 2, figsize=(13, 4.4))
ax[0].axhline(ann, color="k", ls="--", label="ANN")
for k, v in enumerate(PAPER_VARIANTS):
    vals = [acc[v, T] for T in Ts]
    dodge = 2.0 ** (0.04 * (k - 1.5))                     # side by side, error bars apart
    ax[0].errorbar(np.array(Ts) * dodge, vals, yerr=binomial_se(vals, n_test), fmt="o-",
                   color=colors[v], capsize=3, label=VARIANTS[v].label)
    ax[1].errorbar(np.array(Ts) * dodge, [ann - a for a in vals], yerr=binomial_se(vals, n_test),
                   fmt="o-", color=colors[v], capsize=3, label=f"{VARIANTS[v].label} (ours)")
    if v in PAPER_T2:
        ax[1].plot([8, 16, 32], PAPER_T2[v], "x:", color=colors[v], ms=8,
                   label=f"{VARIANTS[v].label} (paper, VGG16)")
for a, ticks in zip(ax, [Ts, sorted(set(Ts) | {8, 16, 32})]):
    a.set_xscale("log", base=2)
    a.set_xticks(ticks, [str(T) for T in ticks])
    a.set_xlabel("time steps T")
ax[0].set_ylabel(f"test accuracy (%), {n_test} images")
ax[0].set_title(f"Fig. 5: accuracy vs T ({net.name}, error bars: 1 s.e.)")
ax[1].set_ylabel("loss = ANN - SNN accuracy (points)")
ax[1].set_title("loss vs T, ours and the paper's Table 2")
for a in ax:
    a.legend(fontsize=7, ncol=2 if a is ax[1] else 1)
fig.tight_layout()
savefig(fig, run, "07_fig5_accuracy_vs_T.png")

# %% [markdown]
# ## Fig. 6: first-spike time per layer, and a spike raster
#
# `simulate(..., record=True)` keeps, per neuron, the step of its first spike (0 if it never
# fired). We average over the neurons that fired. You should see the SNN's mean first-spike
# time grow with depth, and the IC-SNN's stay lower in every layer: starting closer to the
# threshold, a neuron fires as soon as it gets input.

# %%
T6 = Ts[-1]
x_fs = x_test[:run.pick(50, 100)]
first, fired = {}, {}
for v in ("snn", "ic-snn"):
    snn.set_v0(v0s[v, T6])
    layers = simulate(snn, x_fs, T6, record=True).layers
    first[v] = [rec["first_spike"][rec["first_spike"] > 0].mean() for rec in layers]
    fired[v] = [(rec["first_spike"] > 0).mean() for rec in layers]
    for l in range(L):
        result(f"fig6_first_spike_{v}_layer{l + 1}", first[v][l])
    print(f"{VARIANTS[v].label:7s} mean first-spike step per layer: "
          + " ".join(f"{f:5.2f}" for f in first[v])
          + "   fraction of neurons that fired: " + " ".join(f"{f:.2f}" for f in fired[v]))
fig, ax = plt.subplots(figsize=(6.5, 4))
for v, m in [("snn", "o-"), ("ic-snn", "s-")]:
    ax.plot(range(1, L + 1), first[v], m, color=colors[v], label=VARIANTS[v].label)
ax.set_xticks(range(1, L + 1))
ax.set_xlabel("layer")
ax.set_ylabel("mean first-spike time step")
ax.set_title(f"Fig. 6: when neurons first fire (T = {T6}, {len(x_fs)} images)")
ax.legend()
fig.tight_layout()
savefig(fig, run, "07_fig6_first_spike.png")

# %% [markdown]
# The raster shows the same at a glance for one image and one layer (layer 3, as in the
# paper's Fig. 7): every row is a neuron, every tick a spike. The step-by-step loop below is
# what `simulate` does (`icsnn_np/simulate.py`), with the spikes of one layer kept at every
# step. Rows are sorted by the ANN's output for that neuron, largest at the top.

# %%
def spike_trains(snn, x, T, node):
    """Run the step-by-step simulation; return ``node``'s spikes at every step (T, N, ...)."""
    for n in snn.nodes:
        n.reset(x.shape[0])
    trains = []
    for _ in range(T):
        h = x
        for m in snn.flat:                   # one time step of the whole network
            h = m.forward(h)
            if m is node:
                trains.append(host(h) > 0)   # spikes * V_th -> bool
    return np.stack(trains)


LR = min(2, L - 1)                           # layer 3 (index 2)
assert snn.nodes[LR] in snn.flat, "the raster needs the node at the top level of the network"
a_img = relu_outputs(net.model, [x_test[:1]])[LR][0].ravel()       # ANN outputs, one image
th = float(np.max(host(snn.nodes[LR].v_th)))
cands = np.flatnonzero((a_img > 0.05 * th) & (a_img < th))
rows = np.random.default_rng(0).choice(cands, min(48, cands.size), replace=False)
rows = rows[np.argsort(a_img[rows])]
fig, ax = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
raster_first = {}
for a, v in zip(ax, ("snn", "ic-snn")):
    snn.set_v0(v0s[v, T6])
    s = spike_trains(snn, x_test[:1], T6, snn.nodes[LR]).reshape(T6, -1)[:, rows]   # (T, rows)
    t_idx, r_idx = np.nonzero(s)
    a.scatter(t_idx + 1, r_idx, marker="|", s=60, color=colors[v])
    firsts = [np.argmax(s[:, j]) + 1 for j in range(len(rows)) if s[:, j].any()]
    raster_first[v] = float(np.mean(firsts)) if firsts else float("nan")
    a.set_title(f"{VARIANTS[v].label}: {int(s.sum())} spikes, mean first spike at step "
                f"{raster_first[v]:.1f}")
    a.set_xlabel("time step t")
    a.set_xlim(0.5, T6 + 0.5)
ax[0].set_ylabel(f"layer {LR + 1} neuron (sorted by ANN output)")
fig.suptitle(f"spike raster, layer {LR + 1}, one test image, T = {T6}")
fig.tight_layout()
savefig(fig, run, "07_spike_raster.png")
result("raster_first_spike_snn", raster_first["snn"])
result("raster_first_spike_ic-snn", raster_first["ic-snn"])

# %% [markdown]
# ## Fig. 7: what layers 1 and 3 output, ANN vs SNN vs IC-SNN
#
# For one test image we take 300 random neurons of the layer, sort them by their ANN
# output (black line), and plot the decoded outputs of the SNN and the IC-SNN for the same
# neurons. Outputs come in steps of V_th/T. In layer 1 the SNN sits *below* the ANN by up
# to one step (it rounds down); the IC-SNN's steps straddle the ANN curve (it rounds to
# the nearest step). In layer 3 the errors of layers 1-2 have accumulated: both spread
# more, the SNN still mostly below, and a few IC-SNN neurons whose ANN output is 0 fire
# once. The gaps close as T grows. Values above V_th (the dotted threshold) cannot be
# represented by either (the plots stop at 1.3 V_th). The printed rms errors are over all
# neurons of the first 20 test images.

# %%
x_img = x_test[:20]
ann_out = relu_outputs(net.model, [x_img])               # per layer (20, C, H, W), host
show = [0, LR]
rng = np.random.default_rng(0)
picks = {l: rng.choice(ann_out[l][0].size, min(300, ann_out[l][0].size), replace=False) for l in show}
rmse = {}
fig, ax = plt.subplots(len(Ts), len(show), figsize=(6 * len(show), 3.1 * len(Ts)), squeeze=False)
for i, T in enumerate(Ts):
    dec = {}
    for v in ("snn", "ic-snn"):
        snn.set_v0(v0s[v, T])
        dec[v] = [rec["decoded"] for rec in simulate(snn, x_img, T, record=True).layers]
    for j, l in enumerate(show):
        a = ann_out[l]
        for v in ("snn", "ic-snn"):
            rmse[v, l, T] = float(np.sqrt(np.mean((dec[v][l] - a) ** 2)))
            result(f"fig7_rmse_{v}_layer{l + 1}_T{T}", rmse[v, l, T])
            print(f"T = {T:2d} layer {l + 1}: rms(decoded - ANN) {VARIANTS[v].label:7s} {rmse[v, l, T]:.4f}")
        order = picks[l][np.argsort(a[0].ravel()[picks[l]])]
        axij = ax[i, j]
        axij.plot(dec["snn"][l][0].ravel()[order], ".", ms=4, color="C0", label="SNN")
        axij.plot(dec["ic-snn"][l][0].ravel()[order], ".", ms=4, color="C3", label="IC-SNN")
        axij.plot(a[0].ravel()[order], "k", lw=1.5, label="ANN (ReLU)")
        th = float(np.max(host(snn.nodes[l].v_th)))
        axij.axhline(th, color="grey", ls=":", lw=1)
        axij.set_ylim(-0.05 * th, 1.3 * th)      # zoom on [0, V_th]: the ANN's tail is cut off
        axij.set_title(f"({'abcdefgh'[i * 2 + j]}) T = {T}, layer {l + 1}")
        axij.set_ylabel("output")
ax[0, 0].legend(fontsize=8, loc="upper left")
for a in ax[-1]:
    a.set_xlabel("neuron (sorted by ANN output)")
fig.tight_layout()
savefig(fig, run, "07_fig7_layer_outputs.png")
snn.set_v0([0.0] * L)

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/07_looking_inside.py`.
#
# 1. **Reproduce** one cell of the paper's Table 2, the IC-SNN loss at T = 16 (paper: 2.97
#    points on VGG16), on this network with `evaluate_conversion`, with its standard error.
#    Name three reasons why it differs.
# 2. **Predict** the first-spike step of a neuron with a constant input of 0.37 V_th at
#    v(0) = 0 and at v(0) = V_th/2 + V_th/16 (IC-SNN's start at T = 8), then check with
#    `IFNode`. Why does the gap between SNN and IC-SNN in Fig. 6 grow with depth?
# 3. **Predict** whether IC-SNN spends more or fewer spikes than the plain SNN at the same
#    T, and measure it (`simulate(..., count=True).firing_rate()`). What does that mean for
#    energy?
#
# ## What you should see

# %%
T0 = Ts[0]
see(f"the plain SNN is lowest at T = {T0}; I-SNN and IC-SNN above it",
    acc["snn", T0] < min(acc["i-snn", T0], acc["ic-snn", T0]),
    f"SNN {acc['snn', T0]:.1f}%, I-SNN {acc['i-snn', T0]:.1f}%, IC-SNN {acc['ic-snn', T0]:.1f}%")
see("every variant gets closer to the ANN as T grows",
    all(ann - acc[v, Ts[-1]] < ann - acc[v, T0] + 2 * binomial_se(ann, n_test) for v in PAPER_VARIANTS))
see("Fig. 6: IC-SNN's neurons fire earlier in every layer",
    all(first["ic-snn"][l] < first["snn"][l] for l in range(L)),
    " ".join(f"{a:.1f}<{b:.1f}" for a, b in zip(first["ic-snn"], first["snn"])))
see("Fig. 6: the SNN's first spikes come later with depth", first["snn"][-1] > first["snn"][0],
    f"layer 1: {first['snn'][0]:.1f}, layer {L}: {first['snn'][-1]:.1f}")
see("Fig. 7: layer 1's IC-SNN output is closer to the ANN than the SNN's at every T",
    all(rmse["ic-snn", 0, T] < rmse["snn", 0, T] for T in Ts))
see("Fig. 7: both get closer to the ANN as T grows",
    all(rmse[v, l, Ts[-1]] < rmse[v, l, T0] for v in ("snn", "ic-snn") for l in show))
finish(run)

# %% [markdown]
# This is the end of the course. Where to go next: `python -m icsnn_np.demo` (the same
# comparison on 1,000 test images, with `--stats` for spikes and energy),
# `python -m icsnn_np.reproduce` (the full tables in `results/`), and
# `python -m icsnn_np.train --dataset cifar10` to convert your own network (pass it to any
# step with `--checkpoint`).
