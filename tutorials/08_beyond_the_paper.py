# %% [markdown]
# # Step 8 — Beyond the paper: IC-SNN among the training-free methods of its family
#
# **After this step you can**
#
# * say which term of Eq. 11 each training-free conversion method changes: the initial
#   potential v(0) (per layer, per channel, or per image), the threshold V_th, or the spikes
#   themselves, and what it costs (calibration images, the ANN, extra time steps);
# * run SNN Calibration, COS, SRP and the MSE threshold search by name
#   (`calibrate(snn, "cos", T, calib, cfg)`, `ConversionConfig(threshold_search="mse")`) and
#   check their laws;
# * compare methods honestly: at equal *total* steps, pre-run included, with error bars.
#
# Eq. 11 (step 5), for every neuron of layer l after T steps:
#
#     r V_th  =  (1/T) sum_t I(t)  +  (v(0) - v(T)) / T
#                 mean input current     error term x V_th
#
# The ANN computes ReLU(mean current). Everything a training-free method can do is move
# one of these terms:
#
# | method | what it changes | from what | extra cost |
# |---|---|---|---|
# | C-SNN `half` (this course's reading of Alg. 3's compensation) | v(0) = V_th/2 per layer | nothing | none |
# | IC-SNN (the paper, Alg. 3) | v(0) = R + C per layer | v(T) on training images | none |
# | SNN Calibration, light (Li et al. 2021) | the input current: + V_th/(2T) + mean(ANN - SNN) per channel, every step | images, the ANN | none |
# | SNN Calibration, advanced | v(0) per neuron = T x mean(ANN - SNN), + V_th/(2T) every step | images, the ANN | none |
# | COS (Hao et al., ICLR 2023) | v(0) per image and neuron: -V_th, 0, +V_th (the code: at least V_th, §2) | the image's rho steps, layer by layer | L rho steps |
# | SRP (Hao et al., AAAI 2023) | the spikes: v(tau) <= 0 may not fire | the image's tau steps | tau steps |
# | MSE thresholds (SNN Calibration) | V_th per layer, chosen for T | training images | none |
#
# V_th/2 is also where QCFS (Bu et al., ICLR 2022) and OPI (Bu et al., AAAI 2022) start their
# neurons, but they are not training-free: QCFS trains the ANN with a quantised
# clip-floor-shift activation instead of the ReLU, OPI trains a clipping bound; V_th/2 is
# only their SNN-side start. Here it is applied to the unchanged ReLU ANN.
#
# A current d added at every step moves the decoded output by d (Eq. 11 with the mean input
# current raised by d), and a shift d of v(0) by d/T (as long as v(T) does not move with
# it): SNN Calibration's official code adds the per-channel mean error e as a current, as
# the network's own bias would carry it (`beyond/calibration.py`, checked against its
# source). Put into v(0) once (T e: our ablation `snn-calib-v0`), the same shift on average
# pushes v(0) above V_th where e is large, and those neurons fire at once whatever their
# input. A pre-run spends time steps on *this* image before the counted ones; the package
# counts them (`PreRunResult.prerun`, `steps`: COS as published calibrates layer after
# layer, each on the calibrated layers below, which a causal network can only do in L rho
# steps; `cos` is our whole-network reading, rho steps), and so must every comparison.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np

from _common import (binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.beyond.calibration import layer_errors
from icsnn_np.beyond.prerun import PreRun, cos_rule, simulate_prerun, srp_rule
from icsnn_np.beyond.thresholds import mse_threshold, quantisation_error
from icsnn_np.runs.compare import ROWS, at_total, run_methods, winners
from icsnn_np.convert import balance_thresholds, convert, relu_outputs
from icsnn_np.neurons import IFNode
from icsnn_np.runs.engine import use_engine
from icsnn_np.runs.evaluate import ConversionConfig, calibrate

run = setup("Step 8: beyond the paper, the training-free family", mode=MODE)
xp = run.xp

ds = load_slice()
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256, in_class=128),
                                   n_test=run.pick(100, 300, in_class=200))
snn = convert(net.model)                        # the SNN remembers its ANN: snn.ann
balance_thresholds(snn, net.model, calib, p=net.p)
use_engine(snn, "fast")                         # its runs on the fast engine: same spikes (A1)
L = len(snn.nodes)
v_th = [float(host(n.v_th)) for n in snn.nodes]
T_E = run.pick(4, 8)                            # the T of sections 1-3
x_few = x_test[:run.pick(24, 100, in_class=50)]

# %% [markdown]
# ## 1. The mean output error, layer by layer
#
# `layer_errors(snn, batches, T)` is SNN Calibration's measure: per channel, the mean over
# images and positions of ANN activation - SNN output (spikes x V_th / T). We set each
# method by name and measure it on test images (SNN Calibration corrected it on the
# calibration images). You should see: the plain SNN loses a good part of V_th/(2T) (the
# dotted line) in every layer, since it rounds down and only the ANN's zeros cost nothing;
# `half` removes most of that, and SNN Calibration removes the rest *per channel* with a
# current at every step, layer after layer, each layer corrected after the layers before
# it. COS and SRP act per image, not on the mean.

# %%
methods = [("SNN", "snn", {}), ("C-SNN half", "c-snn", {"comp": "half"}), ("IC-SNN", "ic-snn", {}),
           ("SNN Calibration", "snn-calib", {}), ("COS", "cos", {}), ("SRP", "srp", {})]
ann_few = relu_outputs(net.model, [x_few])
mean_err = {}
for label, v, kw in methods:
    sim = calibrate(snn, v, T_E, calib, ConversionConfig(p=net.p, **kw))   # COS, SRP: with the pre-run
    errs = layer_errors(snn, [x_few], T_E, ann_outputs=ann_few, run=sim)
    mean_err[label] = [float(np.abs(e).mean()) / th for e, th in zip(errs, v_th)]
    print(f"{label:16s} mean |ANN - SNN| per channel / V_th, layers 1..{L}: "
          + " ".join(f"{e:.3f}" for e in mean_err[label]))
    result(f"mean_abs_error_{v}", np.mean(mean_err[label]))

fig, ax = plt.subplots(figsize=(9, 3.8))
w = 0.8 / len(methods)
for k, (label, _, _) in enumerate(methods):
    ax.bar(np.arange(L) + k * w, mean_err[label], w, label=label)
ax.axhline(0.5 / T_E, color="k", ls=":", label="V_th / (2T)")
ax.set_xticks(np.arange(L) + 0.4 - w / 2, [f"layer {l + 1}" for l in range(L)])
ax.set_ylabel("mean |ANN - SNN| / V_th")
ax.set_title(f"mean output error per channel, T = {T_E} (test images)")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "08_error_by_layer.png")

# %% [markdown]
# ## 2. COS: one threshold of v(0) is one spike
#
# Started at v(0) = V_th/2, a neuron whose spike count is the ANN's *rounded* output ends
# with v(T) in [0, V_th] (Eq. 11). One spike too many leaves v(T) < 0, one too few
# v(T) > V_th. COS reads that residual after a short pre-run of rho steps of the image and
# moves v(0) down (a neuron that fired and ended below 0) or up (one that ended at or above
# V_th). The official code (github.com/hzc1208/ANN2SNN_COS, `modules.py`, `MPLayer`, commit
# ecb3587) fires on v >= V_th and shifts by max(1, v_temp_min - 0.999) thresholds down,
# v_temp_min the lowest potential (in V_th) at which the neuron fired in the pre-run, and by
# max(1, 1.001 - v_max) up, v_max its highest potential on a step it did not fire: one
# threshold, widened just enough that the shift still removes (adds) a spike. The package's
# `cos_rule` shifts by exactly V_th and fires on v > V_th (our reading). With currents in
# [0, V_th], as on the neuron below, no potential reaches 2 V_th and the widening never
# applies: one threshold removes or adds exactly one spike.

# %%
rng = np.random.default_rng(0)
currents = rng.uniform(0, 1, size=(T_E, 1000)).astype(np.float64)


def spike_count(v0):
    node = IFNode(v_th=1.0, v0=v0)
    node.reset(1000, count=True)
    for c in currents:
        node.forward(c[:, None])
    return node.spike_count[:, 0]


base = spike_count(0.5)
down, up = spike_count(0.5 - 1.0), spike_count(0.5 + 1.0)
print(f"v(0) - V_th: spike count - 1 for every neuron that fired: "
      f"{bool(np.all(down == np.maximum(base - 1, 0)))}; v(0) + V_th: +1 at most: "
      f"{bool(np.all((up - base >= 0) & (up - base <= 1)))}")
result("cos_shift_removes_one_spike", int(np.all(down == np.maximum(base - 1, 0))))

rho = 4
seen = []


def watch(rule):
    """``rule``, keeping what it saw (v(rho), spike counts) and what it decided."""
    def wrapped(v, count, v0, v_th):
        out = rule(v, count, v0, v_th)
        seen.append((v, count, out))
        return out
    return wrapped


snn.set_v0([th / 2 for th in v_th])
simulate_prerun(snn, x_few, T_E, PreRun(rho, watch(cos_rule)))
for l, (v, count, (v_start, _)) in enumerate(seen):
    shift = (host(v_start) - v_th[l] / 2) / v_th[l]
    print(f"COS layer {l + 1}: v(0) moved down by V_th for {100 * np.mean(shift < 0):.1f}% of "
          f"the neurons, up for {100 * np.mean(shift > 0):.1f}%")
    result(f"cos_down_pct_layer{l + 1}", 100 * np.mean(shift < 0))

# %% [markdown]
# ## 3. SRP: silencing the neurons the ANN would silence
#
# SRP's analysis is of the *unevenness* error (spikes arriving unevenly in time), which it
# splits into four cases: the largest share is a neuron that fires although its ANN output
# is zero (early positive current, later negative). Started
# at V_th/2, such a neuron shows it by v(tau) <= 0 after tau steps; SRP forbids it to fire
# for the T counted steps. How often is a silenced neuron really an ANN zero?

# %%
seen.clear()
simulate_prerun(snn, x_few, T_E, PreRun(rho, watch(srp_rule)))
precision = []
for l, ((v, _, (_, gate)), a) in enumerate(zip(seen, ann_few)):
    off = ~host(gate).astype(bool)
    precision.append(float((a[off] == 0).mean()) if off.any() else 1.0)
    print(f"SRP layer {l + 1}: silenced {100 * off.mean():5.1f}% of the neurons; of those, "
          f"{100 * precision[-1]:5.1f}% have ANN output 0")
    result(f"srp_silenced_pct_layer{l + 1}", 100 * off.mean())
    result(f"srp_precision_layer{l + 1}", precision[-1])

# %% [markdown]
# ## 4. MSE thresholds: V_th chosen for the T you will run
#
# Threshold balancing takes a p-quantile of each layer's ANN activations, whatever T. SNN
# Calibration instead tries 95 candidates, max x (1 - 0.01 i) for i = 0 .. 94 (its official
# code, `find_threshold_mse` in `models/spiking_layer.py`), and keeps the one
# whose clipped, floored T-step output is closest (squared error) to the activations. At
# small T the steps are coarse, and the best threshold is a compromise between clipping
# large values and flooring small ones. Below: the search on the first layer.

# %%
acts = relu_outputs(net.model, calib)
fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
for k, T in enumerate(run.pick([4, 16], [4, 8, 32], in_class=[4, 32])):
    th, cands, errors = mse_threshold(acts[0], T, extra=(v_th[0],))
    order = np.argsort(cands)
    ax[0].plot(np.array(cands)[order], np.array(errors)[order], label=f"T = {T}")
    ax[0].plot([th], [min(errors)], "kv", ms=7, label="its minimum: the MSE V_th" if k == 0 else None)
    result(f"mse_vth_over_quantile_layer1_T{T}", th / v_th[0])
ax[0].axvline(v_th[0], color="k", ls="--", label=f"p-quantile V_th (p = {net.p})")
ax[0].set(xlabel="candidate V_th (layer 1)", yscale="log",
          ylabel="mean squared error\n(T-step output vs ANN, layer 1)",
          title="(a) the search on layer 1: error of each candidate V_th")
ax[0].legend(fontsize=8)
ratios = []
for l, a in enumerate(acts):
    th = mse_threshold(a, T_E, extra=(v_th[l],))[0]
    ratios.append(th / v_th[l])
    print(f"layer {l + 1}: p-quantile V_th {v_th[l]:.3f}, MSE V_th at T = {T_E}: {th:.3f} "
          f"(error {quantisation_error(a, T_E, th):.2e} vs {quantisation_error(a, T_E, v_th[l]):.2e})")
ax[1].bar(np.arange(L), ratios)
ax[1].axhline(1.0, color="k", ls="--")
ax[1].set_xticks(np.arange(L), [f"layer {l + 1}" for l in range(L)])
ax[1].set_ylabel(f"MSE V_th / p-quantile V_th (T = {T_E})")
ax[1].set_title(f"(b) every layer: the MSE choice at T = {T_E} over the p-quantile (dashed: equal)")
fig.tight_layout()
savefig(fig, run, "08_mse_threshold_search.png")

# %% [markdown]
# ## 5. The comparison, steps counted honestly
#
# `icsnn_np.runs.compare.run_methods` measures every method with both threshold searches; COS
# and SRP are also run at T = S - rho so that each total S = rho + T has a number. The
# plot's x axis is the total number of steps an image needed. (`python -m icsnn_np.compare`
# runs the same on 2,000 test images: `results/methods_vgg_cpu.md`.) Error bars: one
# binomial standard error. On a few hundred images a point is worth about ±2 points:
# differences smaller than that are noise.
#
# The figure is a set of small multiples. The first panel is the overview at full scale: the
# plain SNN (black) against every other method (grey), which crowd together near the ANN.
# Each other panel zooms on one method: solid with p-quantile thresholds, dashed with the
# MSE search (section 4), the ANN dashed black, the paper's IC-SNN as a thin grey reference.
# The methods, as the panel titles name them:
#
# * **SNN**: plain conversion, v(0) = 0.
# * **C-SNN half**: v(0) = V_th/2 in every layer (the table above).
# * **I-SNN**: the paper's Alg. 2, with the remainder reading (this course's, step 5).
# * **IC-SNN**: the paper's Alg. 3: Alg. 2 on the network started at V_th/(2T), plus V_th/(2T).
# * **IC-SNN fixed point (ours)**: Alg. 2 repeated from IC-SNN's v(0) until v(0) stops moving
#   (`icsnn_np.beyond.fixed_point`); this course's extension, not in the paper.
# * **SNN Calibration (light)**, **COS**, **SRP**: sections 1, 2 and 3; SRP's and whole-network
#   COS's points sit at rho + T total steps, COS layer by layer's at L rho + T.

# %%
Ts = run.pick([4], [4, 8, 16], in_class=[4, 8])
cfg = ConversionConfig(p=net.p, batch_size=100, prerun=run.pick(2, 4), engine="fast")
shown = run.pick(("snn", "c-snn", "snn-calib", "cos", "srp"),
                 ("snn", "c-snn", "i-snn", "ic-snn", "ic-snn-fp", "snn-calib", "cos-layer", "cos", "srp"),
                 in_class=("snn", "c-snn", "ic-snn", "snn-calib", "cos", "srp"))
rows = [r for r in ROWS if r[1] in shown]
x_calib = xp.concatenate(calib)
searches = run.pick(("quantile", "mse"), ("quantile", "mse"), in_class=("quantile",))
res = run_methods(net.model, x_calib, x_test, y_test, cfg, Ts, searches, rows=rows, log=lambda s: None)
for S, ranked in winners(res).items():
    best, acc = ranked[0]
    print(f"total steps {S:3d}: best {best} ({acc:.1f}%, ANN {res['ann_acc']:.1f}%)")
    result(f"best_loss_total{S}", res["ann_acc"] - acc)

SHORT = {"snn": "SNN", "c-snn": "C-SNN half", "i-snn": "I-SNN", "ic-snn": "IC-SNN",
         "ic-snn-fp": "IC-SNN fixed point (ours)", "snn-calib": "SNN Calibration (light)",
         "cos-layer": "COS layer by layer (+ L rho)", "cos": "COS whole network (+ rho)",
         "srp": "SRP (+ pre-run)"}


def curve(variant, thr):
    """(total steps, accuracy) of one row, by total steps."""
    r = next(r for r in res["rows"] if r["variant"] == variant and r["thresholds"] == thr)
    ms = sorted(r["T"].values(), key=lambda m: m["steps"])
    return np.array([m["steps"] for m in ms]), np.array([m["acc"] for m in ms])


others = [v for v in dict.fromkeys(r["variant"] for r in res["rows"]) if v != "snn"]
COLOURS = {"c-snn": "C1", "i-snn": "C2", "ic-snn": "C3", "ic-snn-fp": "C4", "snn-calib": "C5",
           "cos-layer": "C6", "cos": "C8", "srp": "C9"}              # C7, grey, is the reference's
ticks = sorted({m["steps"] for r in res["rows"] for m in r["T"].values()})
keep = [t for t in ticks if t & (t - 1) == 0]                    # powers of 2, then the others
keep += [t for t in ticks if t not in keep and min((abs(np.log2(t / c)) for c in keep), default=1) >= 0.3]
low = min(curve(v, t)[1].min() for v in others for t in searches)
high = max([res["ann_acc"]] + [curve(v, t)[1].max() for v in others for t in searches])
ncol = 4
nrow = -(-(len(others) + 1) // ncol)
fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), sharex=True, squeeze=False)
for k, a in enumerate(axes.flat):
    if k > len(others):
        a.axis("off")
        continue
    a.axhline(res["ann_acc"], color="k", ls="--", lw=1)
    if k == 0:                                       # the overview, full scale
        for v in others:
            a.plot(*curve(v, "quantile"), "o-", color="grey", ms=3, lw=1)
        a.errorbar(*curve("snn", "quantile"), yerr=binomial_se(curve("snn", "quantile")[1], res["n_test"]),
                   fmt="o-", color="k", capsize=3)
        a.set_title("overview: SNN (black), the others (grey)", fontsize=9)
    else:
        v = others[k - 1]
        if v != "ic-snn" and "ic-snn" in others:
            a.plot(*curve("ic-snn", "quantile"), "-", color="grey", lw=1)
        for thr, ls in (("quantile", "-"), ("mse", "--"))[:len(searches)]:
            steps, acc = curve(v, thr)
            a.errorbar(steps, acc, yerr=binomial_se(acc, res["n_test"]), fmt="o" + ls, capsize=3,
                       color=COLOURS.get(v, "C0"),   # one colour per method in every mode
                       label=f"V_th: {'p-quantile' if thr == 'quantile' else 'MSE'}")
        a.set_ylim(low - 4, high + 4)
        a.set_title(SHORT.get(v, v), fontsize=10)
    a.set_xscale("log", base=2)
    a.set_xticks(keep, [str(t) for t in keep])                  # labels that do not collide
    a.grid(alpha=0.3)
    if k + ncol > len(others):                       # the lowest panel of its column
        a.tick_params(labelbottom=True)
        a.set_xlabel("total time steps (pre-run + T)")
axes[0, 1].legend(fontsize=7, loc="lower right")
for a in axes[:, 0]:
    a.set_ylabel(f"accuracy (%), {res['n_test']} images")
fig.suptitle("training-free methods at equal total steps: dashed black = ANN; thin grey = the "
             "paper's IC-SNN (p-quantile); error bars 1 s.e.", fontsize=10)
fig.tight_layout()
savefig(fig, run, "08_comparison.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/08_beyond_the_paper.py`.
#
# 1. **Eq. 11 after SNN Calibration.** Correct only layer 1 of the SNN (start at V_th/2)
#    and show that the mean error left in each channel is *exactly* the mean change of v(T)
#    divided by T. Why is it not zero?
# 2. **The cost of a pre-run.** Count the image-steps a COS run takes with
#    `icsnn_np.runs.progress.tracking` and check that it is (rho + T) per image; then compute the
#    firing rate per step with and without the pre-run's spikes, and the spikes per image.
#    Why is the rate per step about the same while the spike count is not?
# 3. **SRP in the first layer.** Show that with direct coding SRP never silences a
#    first-layer neuron whose ANN output is positive (a proof and a measurement). Why does
#    that fail in deeper layers?
#
# ## What you should see

# %%
see("SNN Calibration leaves a smaller mean output error than the plain SNN in every layer",
    all(c < s for c, s in zip(mean_err["SNN Calibration"], mean_err["SNN"])),
    " ".join(f"{c:.3f}<{s:.3f}" for c, s in zip(mean_err["SNN Calibration"], mean_err["SNN"])))
see("a shift of v(0) by one threshold removes exactly one spike (currents in [0, V_th])",
    bool(np.all(down == np.maximum(base - 1, 0))))
see("SRP silences only ANN zeros in the first layer (direct coding)", precision[0] == 1.0,
    f"{100 * precision[0]:.1f}%")
first = {(r["variant"], r["thresholds"]): at_total(r, Ts[0]) for r in res["rows"]}
plain = first["snn", "quantile"]["acc"]
see(f"at {Ts[0]} total steps every method beats plain conversion",
    all(m["acc"] >= plain for (v, _), m in first.items() if m and v != "snn"),
    f"plain SNN {plain:.1f}%")
finish(run)

# %% [markdown]
# Next: `09_the_t_level_ann_and_qcfs.py`, the T-level ANN as a reference level for all of
# these methods, and an ANN trained for conversion (QCFS). `python -m icsnn_np.compare
# --checkpoint vgg_cpu` measures all of this on 2,000 test images; the README says which
# method wins at which T and by how much.
