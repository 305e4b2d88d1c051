# %% [markdown]
# # Step 7 — Looking inside: the paper's Figs. 5, 6 and 7
#
# **After this step you can**
#
# * measure the paper's four variants (SNN, I-SNN, C-SNN, IC-SNN) against T (its Fig. 5),
#   and say which of its claims hold on 2,000 images of three networks, by a paired test;
# * read a spike raster and a first-spike plot (Fig. 6), and say why a good v(0) makes every
#   layer start sending information at once;
# * compare a layer's decoded SNN output with the ANN's, neuron by neuron (Fig. 7).
#
# Settings: the package defaults (Alg. 2 reading `remainder`, ours; compensation `literal`; one
# v(0) per layer; direct coding, where the paper rate-codes), the model's p; `calibrate_variant`.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import json
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from _common import (ROOT, binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.runs.engine import use_engine
from icsnn_np.runs.tables import PAPER_TABLES, mcnemar, unpack_correct
from icsnn_np.simulate import simulate
from icsnn_np.beyond.methods import METHODS
from icsnn_np.variants import LABELS, PAPER_VARIANTS, calibrate_variant

run = setup("Step 7: looking inside (Figs. 5, 6, 7)", mode=MODE)
RESULTS = ROOT / "results"                   # the repository's measured tables (2,000 images)
xp = run.xp
ds = load_slice()
net = get_model(run, ds)
n_test = run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=n_test)
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
use_engine(snn, "fast"); L = len(snn.nodes)   # its runs (Alg. 2's too) on the fast engine (A1)

# %% [markdown]
# ## Fig. 5: accuracy against T
#
# For every T, each variant is calibrated for that T (`calibrate_variant`) and measured
# (`snn_accuracy`), as `evaluate_conversion` does (behind `python -m icsnn_np.demo`), written
# out to keep each v(0) for Figs. 6 and 7. You should see the plain SNN lowest at small T,
# I-SNN and IC-SNN far above it, all curves approaching the ANN as T grows, and C-SNN as
# printed (V_th/(2T)) gaining little (step 6). 200 images: the claims are checked on 2,000
# images in the next section.

# %%
Ts = run.pick([4, 8, 16], [8, 16, 32], in_class=[8, 16])
cfg = ConversionConfig(batch_size=100)
ann = ann_accuracy(net.model, x_test, y_test)
result("ann_acc", ann)
acc, v0s = {}, {}
for T in Ts:
    for v in PAPER_VARIANTS:
        v0s[v, T] = calibrate_variant(snn, v, T, calib)   # fast engine (A1): same spikes
        acc[v, T] = snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        print(f"T = {T:3d} {LABELS[v]:7s} accuracy {acc[v, T]:6.2f}%  loss {ann - acc[v, T]:6.2f}"
              f"   ({METHODS[v].summary})")
        result(f"fig5_acc_{v}_T{T}", acc[v, T])

colors = {"snn": "k", "i-snn": "C0", "c-snn": "C1", "ic-snn": "C3"}
fig, ax = plt.subplots(figsize=(7, 4.4))
ax.axhline(ann, color="k", ls="--", label="ANN")
for k, v in enumerate(PAPER_VARIANTS):
    vals = [acc[v, T] for T in Ts]
    dodge = 2.0 ** (0.04 * (k - 1.5))                     # side by side, error bars apart
    ax.errorbar(np.array(Ts) * dodge, vals, yerr=binomial_se(vals, n_test), fmt="o-",
                color=colors[v], capsize=3, label=LABELS[v])
ax.set_xscale("log", base=2)                                    # base 2: no minor labels
ax.set(xlabel="time steps T", ylabel=f"test accuracy (%), {n_test} images of the slice",
       title=f"Fig. 5 on {net.name} (error bars: 1 s.e.)")
ax.set_xticks(Ts, [str(T) for T in Ts])
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "07_fig5_accuracy_vs_T.png")

# %% [markdown]
# ## Does the paper reproduce? (results/, 2,000 test images, three networks)
#
# 200 images cannot settle a claim (one standard error: 2.5 points). `results/` hold the four
# variants on the first 2,000 CIFAR-10 test images for three networks trained on CPU, with
# which images each got right: `vgg_cpu` (6 conv layers; `vgg_cpu_cifar10_paired` is the
# bundled float16 model, `vgg_cpu_cifar10.md` its float32 original, within 0.75 points),
# `vgg16_cpu` (VGG16's 13 conv layers, narrower), `resnet20` (own V_th and v(0) per IF node).
# McNemar's exact test (`runs.tables.mcnemar`) compares two variants on the *same* images
# (only the images one gets right and the other wrong count); a step of the paper's order
# "holds" where its winner wins with p < 0.05, is "reversed" where the other wins, a "tie"
# otherwise. The cell reads the files. Settings: the package defaults (above).

# %%
NETS = {"vgg_cpu": ("vgg_cpu_cifar10_paired", ""), "vgg16_cpu": ("vgg16_cpu_cifar10", ""),
        "resnet20": ("resnet20_cifar10", "block node")}
ORDER = ("IC-SNN", "I-SNN", "C-SNN", "SNN")                  # the paper's claim: loss IC < I < C < SNN
T_BOX, box, verdict = (8, 16, 32), {}, {}
for name, (stem, setting) in NETS.items():
    res = json.loads((RESULTS / f"{stem}.json").read_text())
    rows = {r["label"]: r["T"] for r in res["rows"] if r.get("setting", "") == setting}
    box[name] = {"ann": res["ann_acc"], "n": res["n_test"], "rows": res["rows"],
                 "loss": {(lab, T): rows[lab][str(T)]["loss"] for lab in ORDER for T in T_BOX},
                 "all": {lab: {int(T): m["loss"] for T, m in rows[lab].items()} for lab in ORDER}}
    print(f"{name}: ANN {res['ann_acc']:.2f}% on {res['n_test']} images; loss (points) and the "
          f"paper's order, step by step")
    for T in T_BOX:
        cells = []
        for a, b in zip(ORDER, ORDER[1:]):
            ca, cb = (unpack_correct(rows[x][str(T)]["correct"], res["n_test"]) for x in (a, b))
            only_a, only_b, p = mcnemar(ca, cb)
            verdict[name, T, a] = ("tie" if p >= 0.05 else "holds" if only_a > only_b else "reversed")
            cells.append(f"{a} < {b}: {verdict[name, T, a]:8s} (p = {p:.2g})")
        losses = " ".join(f"{lab} {box[name]['loss'][lab, T]:5.2f}" for lab in ORDER[::-1])
        print(f"  T = {T:2d}  {losses}  |  " + "; ".join(cells))
        result(f"paper_order_{name}_T{T}", int(all(verdict[name, T, a] == "holds" for a in ORDER[:3])))
    high = {lab: [v for T, v in sorted(box[name]["all"][lab].items()) if T >= 64] for lab in ORDER[::-1]}
    if any(high.values()):                   # the T >= 64 columns, where the file has them
        print("  T = 64 / 128 / 256:  " + "   ".join(f"{lab} " + " / ".join(f"{v:.2f}" for v in vals)
                                                 for lab, vals in high.items()))

fig, ax = plt.subplots(2, 3, figsize=(16, 7), gridspec_kw={"height_ratios": [4, 1]})
ticks = [-1, 0, 1, 2, 5, 10, 20, 50, 100]
for a, t, name in zip(ax[0], ax[1], NETS):
    table, paper_ann, paper = PAPER_TABLES["resnet20" if name == "resnet20" else "vgg16"]
    for lab in ORDER[::-1]:
        Tl, loss = zip(*sorted(box[name]["all"][lab].items()))          # every T the file has
        a.errorbar(Tl, loss, yerr=binomial_se([box[name]["ann"] - x for x in loss], box[name]["n"]),
                   fmt="o-", capsize=3, color=colors[lab.lower()], label=f"{lab}, ours")
        if lab in paper:
            a.plot(sorted(map(int, paper[lab])), [paper[lab][str(T)] for T in sorted(map(int, paper[lab]))],
                   "x:", color=colors[lab.lower()], ms=8, label=f"{lab}, paper")
    shown_at = [T for T in T_BOX if all(verdict[name, T, x] == "holds" for x in ORDER[:3])]
    a.set_title(f"{name}: ANN {box[name]['ann']:.2f}%, {box[name]['n']:,} images\npaper: {table} "
                f"(ANN {paper_ann}%)", fontsize=10)
    a.set(xscale="log", yscale="symlog", ylim=(-1, 120), xlabel="time steps T")
    a.set_xticks([8, 16, 32, 64, 128, 256], ["8", "16", "32", "64", "128", "256"])
    a.set_yticks(ticks, [str(x) for x in ticks])
    a.grid(alpha=0.3)
    t.axis("off")                            # McNemar's verdicts, as text under the panel
    t.text(0, 1, "McNemar (p < 0.05) on the order IC < I < C < SNN:\nshown at "
           + ("T = " + ", ".join(map(str, shown_at)) if shown_at else "no T") + "\n" + "\n".join(
               f"T = {T:2d}:  " + "   ".join(f"{x.split('-')[0]} < {y.split('-')[0]}: {verdict[name, T, x]}"
                                              for x, y in zip(ORDER, ORDER[1:])) for T in T_BOX),
           va="top", fontsize=9, family="monospace", transform=t.transAxes)
ax[0, 0].set_ylabel("loss = ANN - SNN (points)\nlinear in [-1, 1], log beyond")
hl = sorted(zip(*ax[0, 0].get_legend_handles_labels()), key=lambda h: "paper" in h[1])   # ours first
fig.legend(*zip(*hl), loc="lower center", ncol=7, fontsize=9)
fig.suptitle("NOT the same experiment: the paper's networks on 10,000 images (rate coding, its readings) "
             "beside ours on 2,000 (results/); compare shapes.\nError bars: 1 s.e. of the SNN's accuracy "
             "(the ANN's own, about 0.8, moves a whole panel)", fontsize=10)
fig.tight_layout(rect=(0, 0.05, 1, 1))
savefig(fig, run, "07_paper_comparison.png")

# %% [markdown]
# **What holds, on all three networks.** The plain SNN collapses at T = 8 and a data-based
# v(0) (I-SNN, IC-SNN) brings most of it back (Sec. 4.2.1: "only 20 % to 30 %", "more than
# 70 %"); I-SNN beats C-SNN at T = 8 and 16; the gain shrinks as T grows (Sec. 4.3: "the
# lower the time step, the more noticeable our improvements").
#
# **What does not.** The full order IC < I < C < SNN is shown at no T on any network. IC-SNN,
# the paper's method, beats I-SNN only on ResNet-20 at T = 8 (by 3.65 points) and loses to it
# on vgg_cpu at T = 8 (by 2.30); elsewhere the two are not told apart: the paper's gap (22.28
# -> 9.95 at T = 8, Table 2) does not appear. C-SNN as printed beats the plain SNN at T = 8
# only on vgg_cpu (by 6.70).
#
# **What is in the way** (the rows printed below): the compensation as printed, V_th/(2T),
# moves the decoded output by only V_th/(2T^2) (steps 2 and 6), while V_th/2 (this course's
# reading) works; Alg. 2 as printed (the raw mean of v(T)) silences the network, so I-SNN and
# IC-SNN here use the remainder reading (ours), which already lands near V_th/2 (step 5) and
# leaves the compensation little to add; on ResNet-20 the paper's block treatment (one V_th
# per block, v(0) on its first node) loses far more than a V_th and v(0) per IF node.
#
# **What the box leaves out.** *CIFAR-100* (Tables 3 and 5) is not tested: the package reads
# it, but no copy was available offline where `results/` were made, so no network was
# trained on it. *T >= 64* (the last columns, printed above): vgg16_cpu still loses 3.20 /
# 2.60 / 2.35 points with IC-SNN at T = 64 / 128 / 256, every variant 2.20-2.35 at T = 256,
# where the paper's VGG16 loses 0.05-0.13; resnet20 reaches its ANN (IC-SNN 0.10, the plain
# SNN -0.05 at T = 256). *The coding cuts against the paper*: it rate-codes, we code
# directly; step 3 measures the plain SNN on vgg_cpu at 57.5 % / 85.5 % with direct coding,
# 19.0 % / 33.5 % with rate coding at T = 8 / 32 (ANN 88.5 %, 200 images): under the paper's
# own coding the losses would be larger and the reproduction would fail further.

# %%
readings = {r["label"]: r["T"] for r in box["vgg16_cpu"]["rows"]}      # all rows of vgg16_cpu's table
for label in ("SNN", "C-SNN literal V/2T (paper literal)", "C-SNN half V/2", "I-SNN raw (paper literal)",
              "I-SNN remainder"):
    print(f"vgg16_cpu {label:36s} loss at T = 8 / 16 / 32: "
          + " / ".join(f"{readings[label][str(T)]['loss']:.2f}" for T in T_BOX))
paper_block = {r["label"]: r["T"]["8"]["loss"] for r in box["resnet20"]["rows"]
               if r.get("setting") == "block paper"}
print(f"resnet20 IC-SNN at T = 8: {box['resnet20']['loss']['IC-SNN', 8]:.2f} points per IF node, "
      f"{paper_block['IC-SNN']:.2f} with the paper's block treatment")

# %% [markdown]
# ## Fig. 6: first-spike time per layer, and a spike raster
#
# `simulate(..., record=True)` keeps each neuron's first-spike step (0: never fired); we
# average over the neurons that fired. IC-SNN's mean should be lower than the SNN's in every
# layer (Sec. 4.2.2): started closer to the threshold, a neuron fires as soon as it gets
# input. The SNN's deep layers fire later than layer 1, though not layer after layer: which
# neurons fire at all changes from layer to layer.

# %%
T6 = Ts[-1]
x_fs = x_test[:run.pick(50, 100, in_class=50)]
first, fired = {}, {}
for v in ("snn", "ic-snn"):
    snn.set_v0(v0s[v, T6])
    layers = simulate(snn, x_fs, T6, record=True).layers
    first[v] = [rec["first_spike"][rec["first_spike"] > 0].mean() for rec in layers]
    fired[v] = [(rec["first_spike"] > 0).mean() for rec in layers]
    for l in range(L):
        result(f"fig6_first_spike_{v}_layer{l + 1}", first[v][l])
    print(f"{LABELS[v]:7s} mean first-spike step per layer: {np.round(first[v], 2)}   "
          f"fraction of neurons that fired: {np.round(fired[v], 2)}")
fig, ax = plt.subplots(figsize=(6.5, 4))
for v, m in [("snn", "o-"), ("ic-snn", "s-")]:
    ax.plot(range(1, L + 1), first[v], m, color=colors[v], label=LABELS[v])
ax.set(xticks=range(1, L + 1), xlabel="layer", ylabel="mean first-spike time step",
       title=f"Fig. 6: when neurons first fire (T = {T6}, {len(x_fs)} images)")
ax.legend()
fig.tight_layout()
savefig(fig, run, "07_fig6_first_spike.png")

# %% [markdown]
# The raster shows it for one image and layer 3 (as the paper's Fig. 7): a row per neuron
# (sorted by the ANN's output, largest on top), a tick per spike. The loop below is what
# `simulate` does (`icsnn_np/simulate.py`), keeping one layer's spikes at every step.

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
    result(f"raster_first_spike_{v}", raster_first[v])
    a.set_title(f"{LABELS[v]}: {int(s.sum())} spikes, mean first spike at step "
                f"{raster_first[v]:.1f}")
    a.set(xlabel="time step t", xlim=(0.5, T6 + 0.5))
ax[0].set_ylabel(f"layer {LR + 1} neuron (sorted by ANN output)")
fig.suptitle(f"spike raster, layer {LR + 1}, one test image, T = {T6}")
fig.tight_layout()
savefig(fig, run, "07_spike_raster.png")

# %% [markdown]
# ## Fig. 7: what layers 1 and 3 output, as residuals
#
# The paper's Fig. 7 draws ANN and decoded SNN outputs as curves. Here it is a *residual
# plot*: every neuron of the first 20 test images (10 in class mode) is counted (2-D
# histogram, log colour) at x = ANN output / V_th, y = decoded - ANN in spikes (V_th / T).
# A perfect SNN is y = 0, one that rounds down lies in (-1, 0], one that rounds to the
# nearest spike in [-1/2, 1/2]. Columns are V_th/T wide (narrower ones leave holes between
# the stripes k - T x of the spike counts k); the first holds the ANN's zeros: a count above
# it fired although the ANN says 0. In layer 1 the SNN fills (-1, 0], the IC-SNN straddles
# zero; in layer 3 the errors of layers 1-2 have accumulated. Above V_th the output is
# clipped; residuals beyond +-3 spikes sit in the end rows; titles: mean residual, 0 < ANN < V_th.

# %%
x_img = x_test[:run.pick(10, 20, in_class=10)]
ann_out = relu_outputs(net.model, [x_img])               # per layer (N, C, H, W), host
show, rmse, bias, hists = [0, LR], {}, {}, {}          # layers 1 and 3
y_edges, x_edges = np.linspace(-3, 3, 25), {}          # y: quarter spikes; x: 1/T, below
for T in Ts:              # in a column 1/T wide each count k spans one whole spike: no holes
    x_edges[T] = np.r_[-1 / T, 1e-12, np.arange(1, int(1.3 * T) + 2) / T]   # zeros: own column
    dec = {}
    for v in ("snn", "ic-snn"):
        snn.set_v0(v0s[v, T])
        dec[v] = [rec["decoded"] for rec in simulate(snn, x_img, T, record=True).layers]
    for l in show:
        a = ann_out[l]
        th = float(np.max(host(snn.nodes[l].v_th)))
        for v in ("snn", "ic-snn"):
            rmse[v, l, T] = float(np.sqrt(np.mean((dec[v][l] - a) ** 2)))
            resid = ((dec[v][l] - a) * T / th).ravel()                       # in spikes
            x = (a / th).ravel()
            inside = (x > 0) & (x < 1)
            bias[v, l, T] = float(resid[inside].mean())
            hists[v, l, T] = np.histogram2d(np.clip(x, x_edges[T][0], x_edges[T][-1] - 1e-9),
                                            np.clip(resid, -3, 3 - 1e-9), bins=(x_edges[T], y_edges))[0]
            result(f"fig7_rmse_{v}_layer{l + 1}_T{T}", rmse[v, l, T])
            result(f"fig7_bias_spikes_{v}_layer{l + 1}_T{T}", bias[v, l, T])
            print(f"T = {T:2d} layer {l + 1}: {LABELS[v]:7s} rms(decoded - ANN) "
                  f"{rmse[v, l, T]:.4f}, mean residual {bias[v, l, T]:+.2f} spikes (0 < ANN < V_th)")
fig, ax = plt.subplots(len(Ts), 2 * len(show), figsize=(15, 3.0 * len(Ts)), squeeze=False,
                       sharex=True, sharey=True)
norm = LogNorm(vmin=1, vmax=max(h.max() for h in hists.values()))
for i, T in enumerate(Ts):
    for j, (l, v) in enumerate((l, v) for l in show for v in ("snn", "ic-snn")):
        a = ax[i, j]
        mesh = a.pcolormesh(x_edges[T], y_edges, np.ma.masked_equal(hists[v, l, T].T, 0), cmap="viridis",
                            norm=norm)
        a.axhline(0, color="k", lw=1)
        a.axhspan(-1, 0, color="C0", alpha=0.08)
        a.axhline(-1, color="k", ls=":", lw=1)
        a.axvline(1, color="grey", ls="--", lw=1)
        a.set_title(f"T = {T}, layer {l + 1}, {LABELS[v]}: mean {bias[v, l, T]:+.2f}", fontsize=9)
fig.supylabel("decoded - ANN (spikes)")
fig.supxlabel("ANN output / V_th")
fig.colorbar(mesh, ax=ax, label="neurons x images", pad=0.01, fraction=0.02)
fig.suptitle("Fig. 7 as residuals: shaded, the band (-1, 0] of rounding down; dashed, V_th "
             f"(clipped beyond); {len(x_img)} test images")
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
#    `IFNode`. Why is the gap between SNN and IC-SNN in Fig. 6 larger in the deep layers
#    than in layer 1, and why need it not grow layer after layer (look at the last layer)?
# 3. **Predict** whether IC-SNN spends more or fewer spikes than the plain SNN at the same
#    T, and measure it (`simulate(..., count=True).firing_rate()`). What does that mean for
#    energy?
# 4. **Read critically.** Find these four slips in the paper and say what each should say.
#    (a) Eq. 3 tests `V(t) > V_th`: which quantity must it read (Eq. 6)? Simulate a neuron
#    testing its potential *before* adding the input: how does its count differ? (b) Sec. 4.3
#    gives ResNet20's CIFAR-100 loss at 128 steps in words: compare Table 5. (c) Which datasets
#    does Sec. 4.3 name for ResNet20, and Tables 4-5? (d) How does Sec. 3.4 name Fig. 3's panels?
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
see("Fig. 7: in layer 1 the SNN rounds down (mean residual near -1/2 spike), IC-SNN to the nearest",
    all(-0.7 < bias["snn", 0, T] < -0.3 and abs(bias["ic-snn", 0, T]) < 0.2 for T in Ts),
    ", ".join(f"T = {T}: {bias['snn', 0, T]:+.2f} vs {bias['ic-snn', 0, T]:+.2f}" for T in Ts))
L8 = {n: box[n]["loss"] for n in NETS}
see("results: at T = 8 the plain SNN collapses and I-SNN / IC-SNN recover most of it, on all three",
    all(d["SNN", 8] > 20 and min(d["I-SNN", 8], d["IC-SNN", 8]) < d["SNN", 8] / 2 for d in L8.values()),
    "; ".join(f"{n}: {d['SNN', 8]:.1f} -> {min(d['I-SNN', 8], d['IC-SNN', 8]):.1f}" for n, d in L8.items()))
see("results: the gain of IC-SNN over the plain SNN shrinks as T grows, on all three",
    all(d["SNN", 8] - d["IC-SNN", 8] > d["SNN", 16] - d["IC-SNN", 16] > d["SNN", 32] - d["IC-SNN", 32]
        for d in L8.values()))
see("results: I-SNN beats C-SNN (p < 0.05) at T = 8 and 16 on all three",
    all(verdict[n, T, "I-SNN"] == "holds" for n in NETS for T in (8, 16)))
see("results: the paper's full order IC < I < C < SNN is shown at no T on any network",
    not any(all(verdict[n, T, a] == "holds" for a in ORDER[:3]) for n in NETS for T in T_BOX))
see("results: IC-SNN beats I-SNN (p < 0.05) only on resnet20 at T = 8, loses on vgg_cpu at T = 8",
    [k[:2] for k, v in verdict.items() if k[2] == "IC-SNN" and v == "holds"] == [("resnet20", 8)]
    and [k[:2] for k, v in verdict.items() if k[2] == "IC-SNN" and v == "reversed"] == [("vgg_cpu", 8)])
hi = {n: {lab: box[n]["all"][lab][256] for lab in ORDER if 256 in box[n]["all"][lab]} for n in NETS}
see("results: at T = 256 vgg16_cpu still loses over 2 points with every variant; resnet20 reaches its ANN",
    min(hi["vgg16_cpu"].values()) > 2 and max(map(abs, hi["resnet20"].values()))
    < 2 * binomial_se(box["resnet20"]["ann"], box["resnet20"]["n"]),
    "; ".join(f"{n}: " + ", ".join(f"{lab} {v:.2f}" for lab, v in d.items()) for n, d in hi.items() if d))
see("results: at T = 8 C-SNN as printed beats the plain SNN only on vgg_cpu",
    [n for n in NETS if verdict[n, 8, "C-SNN"] == "holds"] == ["vgg_cpu"])
finish(run)

# %% [markdown]
# Next: `08_beyond_the_paper.py`, IC-SNN among the training-free methods of its family.
