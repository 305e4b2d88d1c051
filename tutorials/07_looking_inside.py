# %% [markdown]
# # Step 7 — Looking inside: the paper's Figs. 5, 6 and 7
#
# The last step puts the pieces together and regenerates the paper's three experimental
# figures on our network:
#
# * **Fig. 5** — accuracy against T for the ANN, the plain SNN, I-SNN (Alg. 2), C-SNN
#   (compensation) and IC-SNN (Alg. 3), with `evaluate_conversion`, the function behind
#   `python -m icsnn_np.demo` and the README's tables.
# * **Fig. 6** — *when* neurons first fire, layer by layer, in the SNN and the IC-SNN
#   (`first_spike` records): a neuron that starts at v(0) = 0 needs several steps of input
#   before its first spike, and the delays add up with depth.
# * **Fig. 7** — the *values* each layer outputs: the ANN's ReLU outputs against the decoded
#   outputs of SNN and IC-SNN (spike count x V_th / T) in layers 1 and 3 at T = 8, 16, 32.
#
# Settings: p = 0.99, Alg. 2 reading `remainder`, one v(0) per layer (the package
# defaults). Fig. 5 shows both compensation sizes of step 6. Figs. 6 and 7 use IC-SNN as
# Alg. 3 prints it, C = V_th/(2T) (`COMP` below): with `half` and the `remainder` reading
# Alg. 3 lands at v(0) = V_th (step 6 explains why). Set `COMP = "half"` to see that one.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from _common import get_model, load_slice, result, savefig, setup, split
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.data import normalize
from icsnn_np.evaluate import ConversionConfig, evaluate_conversion
from icsnn_np.init_mem import calibrate_variant
from icsnn_np.simulate import simulate

COMP = "literal"             # compensation used by IC-SNN in Figs. 6 and 7: literal | half
run = setup("Step 7: looking inside (Figs. 5, 6, 7)")
xp = run.xp
t_start = time.perf_counter()

ds = load_slice()
model, mean, std = get_model(run, ds)
n_test, n_calib = run.pick(200, 200), run.pick(64, 128)
x_calib = normalize(ds.x_train[:n_calib], mean, std, xp)
x_test = normalize(ds.x_test[:n_test], mean, std, xp)
y_test = ds.y_test[:n_test]
calib = split(x_calib, 128)

# %% [markdown]
# ## Fig. 5: accuracy against T
#
# `evaluate_conversion` converts the model, balances thresholds on the calibration images,
# and for every T calibrates each variant for that T and measures it. We call it twice:
# all four variants with the `half` compensation (solid lines), then C-SNN and IC-SNN with
# the `literal` one (dotted). You should see the plain SNN lowest at small T, variants with
# a total v(0) near V_th/2 (I-SNN, C-SNN half, IC-SNN literal) well above it, and all curves
# approaching the ANN as T grows. (The paper's Fig. 5 is VGG16 on CIFAR-10, where the
# plain SNN at T = 8 is far worse than in our 6-layer network.)

# %%
Ts = run.pick([4, 8, 16], [8, 16, 32, 64])
labels = {"snn": "SNN", "i-snn": "I-SNN", "c-snn": "C-SNN", "ic-snn": "IC-SNN"}
curves = {}
for comp, variants in [("half", ("snn", "i-snn", "c-snn", "ic-snn")), ("literal", ("c-snn", "ic-snn"))]:
    cfg = ConversionConfig(T=tuple(Ts), variants=variants, comp=comp, n_calib=n_calib,
                           batch_size=100)
    res = evaluate_conversion(model, x_calib, x_test, y_test, cfg, log=print)
    for v, per_t in res["variants"].items():
        name = labels[v] + (f" {comp}" if v in ("c-snn", "ic-snn") else "")
        curves[name] = [per_t[str(T)]["acc"] for T in Ts]
        for T, a in zip(Ts, curves[name]):
            result(f"fig5_acc_{name.lower().replace(' ', '_')}_T{T}", a)
result("ann_acc", res["ann_acc"])
fig, ax = plt.subplots(figsize=(7, 4.3))
ax.axhline(res["ann_acc"], color="k", ls="--", label="ANN")
colors = {"SNN": "k", "I-SNN": "C0", "C-SNN": "C1", "IC-SNN": "C3"}
for name, accs in curves.items():
    ax.plot(Ts, accs, "o" + (":" if "literal" in name else "-"), color=colors[name.split()[0]],
            label=name)
ax.set_xscale("log", base=2)
ax.set_xticks(Ts, [str(T) for T in Ts])
ax.set_xlabel("time steps T")
ax.set_ylabel("test accuracy (%)")
ax.set_title(f"Fig. 5: accuracy vs T ({n_test} test images of the CIFAR-10 slice)")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "07_fig5_accuracy_vs_T.png")

# %% [markdown]
# ## Fig. 6: first-spike time per layer
#
# `simulate(..., record=True)` keeps, per neuron, the step of its first spike (0 if it never
# fired). We average over the neurons that fired. You should see the SNN's mean first-spike
# time grow with depth, and the IC-SNN's stay lower in every layer: starting closer to the
# threshold, a neuron fires as soon as it gets input.

# %%
snn = convert(model)
balance_thresholds(snn, model, calib, p=cfg.p, xp=xp)
L = len(snn.nodes)
name = {"snn": "SNN", "ic-snn": f"IC-SNN ({COMP})"}
T6 = run.pick(16, 32)
x_fs = x_test[:run.pick(50, 100)]
first = {}
for v in ["snn", "ic-snn"]:
    calibrate_variant(snn, v, T6, calib, comp=COMP)
    layers = simulate(snn, x_fs, T6, record=True).layers
    first[v] = [rec["first_spike"][rec["first_spike"] > 0].mean() for rec in layers]
    fired = [(rec["first_spike"] > 0).mean() for rec in layers]
    for l in range(L):
        result(f"fig6_first_spike_{v}_layer{l + 1}", first[v][l])
    print(f"{name[v]:16s} mean first-spike step per layer: "
          + " ".join(f"{f:5.2f}" for f in first[v])
          + "   fraction of neurons that fired: " + " ".join(f"{f:.2f}" for f in fired))
fig, ax = plt.subplots(figsize=(6.5, 4))
for v, m in [("snn", "o-"), ("ic-snn", "s-")]:
    ax.plot(range(1, L + 1), first[v], m, label=name[v])
ax.set_xticks(range(1, L + 1))
ax.set_xlabel("layer")
ax.set_ylabel("mean first-spike time step")
ax.set_title(f"Fig. 6: when neurons first fire (T = {T6})")
ax.legend()
fig.tight_layout()
savefig(fig, run, "07_fig6_first_spike.png")

# %% [markdown]
# ## Fig. 7: what layers 1 and 3 output, ANN vs SNN vs IC-SNN
#
# For one test image we take 300 random neurons of the layer, sort them by their ANN
# output (black line), and plot the decoded outputs of the SNN and the IC-SNN for the same
# neurons. Outputs come in steps of V_th/T. In layer 1 the SNN sits *below* the ANN by up
# to one step (it rounds down); the IC-SNN's steps straddle the ANN curve (it rounds to
# the nearest step). In layer 3 the errors of layers 1-2 have accumulated: both spread
# more, the SNN still mostly below, and a few IC-SNN neurons whose ANN output is 0 fire
# once (their start near the threshold is pushed over it by a little early input). The
# gaps close as T grows. Values above V_th (the dotted threshold) cannot be represented
# by either (the plots stop at 1.3 V_th, so the ANN's largest values run off the top). The
# printed rms errors are over all neurons of the first 20 test images.

# %%
x_img = x_test[:20]
ann_out = relu_outputs(model, [x_img])                 # per layer (20, C, H, W), host
show = [0, 2] if L >= 3 else [0, L - 1]
rng = np.random.default_rng(0)
picks = {l: rng.choice(ann_out[l][0].size, min(300, ann_out[l][0].size), replace=False) for l in show}
T7 = [8, 16, 32]
fig, ax = plt.subplots(len(T7), len(show), figsize=(6 * len(show), 3.1 * len(T7)), squeeze=False)
for i, T in enumerate(T7):
    dec = {}
    for v in ["snn", "ic-snn"]:
        calibrate_variant(snn, v, T, calib, comp=COMP)
        dec[v] = [rec["decoded"] for rec in simulate(snn, x_img, T, record=True).layers]
    for j, l in enumerate(show):
        a = ann_out[l]
        for v in ["snn", "ic-snn"]:
            rmse = float(np.sqrt(np.mean((dec[v][l] - a) ** 2)))
            result(f"fig7_rmse_{v}_layer{l + 1}_T{T}", rmse)
            print(f"T = {T:2d} layer {l + 1}: rms(decoded - ANN) {name[v]:16s} {rmse:.4f}")
        order = picks[l][np.argsort(a[0].ravel()[picks[l]])]
        axij = ax[i, j]
        axij.plot(dec["snn"][l][0].ravel()[order], ".", ms=4, color="C0", label="SNN")
        axij.plot(dec["ic-snn"][l][0].ravel()[order], ".", ms=4, color="C3", label=name["ic-snn"])
        axij.plot(a[0].ravel()[order], "k", lw=1.5, label="ANN (ReLU)")
        th = float(np.max(snn.nodes[l].v_th))
        axij.axhline(th, color="grey", ls=":", lw=1)
        axij.set_ylim(-0.05 * th, 1.3 * th)      # zoom on [0, V_th]: the ANN's tail is cut off
        axij.set_title(f"({'abcdef'[i * 2 + j]}) T = {T}, layer {l + 1}")
        axij.set_ylabel("output")
ax[0, 0].legend(fontsize=8, loc="upper left")
for a in ax[-1]:
    a.set_xlabel("neuron (sorted by ANN output)")
fig.tight_layout()
savefig(fig, run, "07_fig7_layer_outputs.png")
print(f"done in {time.perf_counter() - t_start:.0f}s")

# %% [markdown]
# **What you should see:** Fig. 5 with the plain SNN at the bottom at small T; Fig. 6 with
# IC-SNN's first spikes earlier in every layer; Fig. 7 with IC-SNN's dots hugging the ANN
# curve more closely than the SNN's in layer 1, more loosely in layer 3, and the rms errors
# falling with T. That is the paper's story: the initial membrane potential makes neurons
# start firing at once, so a short simulation carries more of the ANN's signal.
#
# This is the end of the course. Where to go next: `python -m icsnn_np.demo` (the same
# comparison on 1,000 test images), `python -m icsnn_np.reproduce` (the full tables in
# `results/`), and `python -m icsnn_np.train --dataset cifar10` to convert your own network
# (pass it to any tutorial with `--checkpoint`).
