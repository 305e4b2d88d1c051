# %% [markdown]
# # Step 6 — Coding compensation (Alg. 3) and IC-SNN
#
# **After this step you can**
#
# * explain the coding error of a rate with T steps, V_th/(2T) on average, and how a start
#   at v(0) = V_th/2 cancels it;
# * run Alg. 3 (IC-SNN) step by step and check it against `alg3_ic_init`;
# * tell the two compensation sizes apart (`literal` V_th/(2T) as Alg. 3 prints it, `half`
#   V_th/2, this course's reading) and predict, from where v(0) lands, which variant does well.
#
# Even with the residual potential taken care of, rate coding loses information: a neuron
# can only say "k spikes in T steps", so a value is rounded *down* to a multiple of V_th/T.
# If the lost part is uniform in (0, V_th/T), its expectation is **V_th/(2T)** (paper
# Sec. 3.4, which relates it to the "shift" of Bu et al.'s QCFS, its ref. [14]). Step 2
# showed a cure on one neuron: start at v(0) = V_th/2 and the neuron rounds to the nearest
# step instead.
#
# Alg. 3 (**IC-SNN**) combines this with Alg. 2: set v(0) = C (the compensation), run Alg. 2
# on *that* network to measure R, and use v(0) = R + C.
#
# **How big is C?** Alg. 3 prints `init_mem = V_th/2T`. By Eq. 11 a change delta of v(0)
# moves the decoded output by delta/T *as long as v(T) does not move with it*. It does move:
# a neuron either gains a whole spike or nothing, so the shift is 0 or V_th/T per neuron,
# and about delta/T on average over many neurons (exactly so if their leftovers are spread
# evenly; exercise 2). Cancelling an expected loss of V_th/(2T) on average therefore needs
# delta = V_th/2: that is *this course's reading* of the compensation, not what Alg. 3
# prints. QCFS (ref. [14]) and OPI (ref. [38]) start their neurons at V_th/2 too, after
# training their ANN for it; SpikingJelly 2.0 offers the start only with channel-wise
# conversion, `RateCodingRecipe(channel_wise=True, half_threshold=True)` (step 0). The
# package implements both sizes: `comp="literal"` C = V_th/(2T) and `comp="half"`
# C = V_th/2. Here we measure both, on the error term and on accuracy, combined with
# Alg. 2's readings from step 5.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np

from _common import (binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.init_mem import alg2_data_init, alg3_ic_init, compensation
from icsnn_np.neurons import error_term
from icsnn_np.runs.engine import use_engine
from icsnn_np.simulate import simulate

run = setup("Step 6: coding compensation and IC-SNN", mode=MODE)
xp = run.xp

ds = load_slice()
net = get_model(run, ds)
n_test = run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=n_test)
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
use_engine(snn, "fast")         # Alg. 2/3's runs on the fast engine: the same spikes, sooner (A1)
v_th = [float(host(n.v_th)) for n in snn.nodes]
L = len(snn.nodes)

# %% [markdown]
# ## 1. The compensation on the error term of the first layer
#
# The first layer receives the same current at every step (direct coding), so its error
# term is pure coding loss: with v(0) = 0, e T = (v(0) - v(T))/V_th lies in (-1, 0] for
# every active, unclipped neuron, mean about -0.5. The histograms show it for the three
# choices of v(0) at T = 8: `literal` barely moves it (by 1/(2T) of a step), `half` centres
# it on zero.

# %%
T_E = 8
x_few = x_test[:run.pick(16, 50, in_class=20)]
shift = {}
fig, axs = plt.subplots(3, 1, figsize=(7, 6.2), sharex=True)
for ax, kind, color in zip(axs, ["none", "literal", "half"], ["C0", "C1", "C2"]):
    v0 = [0.0] * L if kind == "none" else compensation(snn, T_E, kind)
    snn.set_v0(v0)
    rec = simulate(snn, x_few, T_E, record=True).layers[0]
    e = error_term(host(v0[0]), rec["v_T"], v_th[0], T_E)       # Eq. 11 error term, layer 1
    I = rec["decoded"] - e * v_th[0]                             # the mean input current (Eq. 11)
    inside = (I > 0) & (I < v_th[0])                             # active and not clipped
    scaled = e[inside] * T_E
    shift[kind] = scaled.mean()
    print(f"v(0) = {kind:8s}: mean e*T = {scaled.mean():+.3f}, range "
          f"[{scaled.min():+.2f}, {scaled.max():+.2f}]")
    result(f"layer1_mean_error_times_T_{kind}", scaled.mean())
    ax.hist(scaled, bins=60, range=(-1.2, 1.2), color=color)
    ax.axvline(scaled.mean(), color="k", ls="--")
    ax.set_title(f"v(0) = {'0' if kind == 'none' else kind}: mean {scaled.mean():+.2f}", fontsize=10)
    ax.set_ylabel("neurons x images")
axs[-1].set_xlabel("error term x T = (v(0) - v(T)) / V_th   (layer 1, active unclipped neurons)")
fig.suptitle(f"coding error of the first layer, T = {T_E}")
fig.tight_layout()
savefig(fig, run, "06_compensation_error_shift.png")

# %% [markdown]
# ## 2. Alg. 3, step by step
#
# Exactly what `alg3_ic_init` does: compensation, Alg. 2 on the compensated network, sum.
# Alg. 2's reading is the package default (`remainder`, this course's reading; step 5
# compared the readings).

# %%
T_A = run.pick(8, 16, in_class=8)
R_over = {}
for comp in ("literal", "half"):
    C = compensation(snn, T_A, comp)                   # lines 4-6: v(0) = C in every layer
    snn.set_v0(C)
    R = alg2_data_init(snn, calib, T_A, reading="remainder")   # line 7: Alg. 2 on it
    final = [r + c for r, c in zip(R, C)]              # lines 8-10: R + C
    check = alg3_ic_init(snn, calib, T_A, comp=comp, reading="remainder")
    assert np.allclose([float(host(a)) for a in final], [float(host(a)) for a in check])
    R_over[comp] = [float(host(r)) / th for r, th in zip(R, v_th)]
    for l in range(L):
        print(f"{comp:7s} layer {l + 1}: C/V_th = {float(host(C[l])) / v_th[l]:.3f}  "
              f"R/V_th = {R_over[comp][l]:.3f}  final v(0)/V_th = {float(host(final[l])) / v_th[l]:.3f}")
        result(f"alg3_{comp}_remainder_R_over_vth_layer{l + 1}", R_over[comp][l])
snn.set_v0([0.0] * L)

# %% [markdown]
# Look at R: with the `remainder` reading it is about V_th/2 in every layer, with either
# compensation (step 5, exercise 3: v(T) mod V_th is the fractional part of the charge a
# neuron received, which averages about one half whatever the data). Alg. 2 with
# this reading is therefore itself a compensation of V_th/2, and R + C with C = V_th/2 lands
# at v(0) = V_th: compensated twice, neurons round *up* instead of down, and a neuron fires
# at its first positive input even when its input is negative on average (an ANN zero
# becomes a spike). With C = V_th/(2T) (`literal`) the sum stays
# near V_th/2. That is why the package's default is `literal` with `remainder`.
#
# ## 3. Accuracy: SNN, C-SNN and IC-SNN, both compensation sizes
#
# Every variant is calibrated for the T it runs at. Panel (a): the compensation alone
# (C-SNN). Panel (b): IC-SNN with Alg. 2's `remainder` reading and either compensation, and
# IC-SNN *as printed*: C = V_th/(2T) and Alg. 2's literal mean of v(T) (`raw`). Panel (c)
# explains both: accuracy at the smallest T (8; 4 in quick mode) when every layer starts at
# the same v(0) = alpha V_th, with the v(0) each variant chose marked on it (its mean over
# layers; raw + literal starts below 0, off the panel). Error bars: one binomial standard
# error.

# %%
Ts = run.pick([4, 8, 16], [8, 16, 32], in_class=[8])
cfg = ConversionConfig(batch_size=100)
ann = ann_accuracy(net.model, x_test, y_test)
result("ann_acc", ann)
variants = {
    "SNN":                       lambda T: [0.0] * L,
    "C-SNN literal":             lambda T: compensation(snn, T, "literal"),
    "C-SNN half":                lambda T: compensation(snn, T, "half"),
    "IC-SNN remainder+literal":  lambda T: alg3_ic_init(snn, calib, T, comp="literal"),
    "IC-SNN remainder+half":     lambda T: alg3_ic_init(snn, calib, T, comp="half"),
    "IC-SNN raw+literal":        lambda T: alg3_ic_init(snn, calib, T, comp="literal", reading="raw"),
}
acc, v0_mean = {}, {}
for T in Ts:
    for name, make_v0 in variants.items():
        v0 = make_v0(T)
        snn.set_v0(v0)
        acc[name, T] = snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        v0_mean[name, T] = np.mean([float(host(a)) / th for a, th in zip(v0, v_th)])
        frac = " ".join(f"{float(host(a)) / th:+.2f}" for a, th in zip(v0, v_th))
        print(f"T = {T:3d}  {name:25s} accuracy {acc[name, T]:6.2f}%   v(0)/V_th: {frac}")
        result(f"acc_{name.lower().replace('+', '_').replace(' ', '_')}_T{T}", acc[name, T])

T_S = run.pick(4, 8)
alphas = run.pick([0.0, 0.5, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0])
sweep = []
for a in alphas:
    snn.set_v0([a * th for th in v_th])
    sweep.append(snn_accuracy(snn, x_test, y_test, T_S, cfg)[0])
    print(f"T = {T_S}, v(0) = {a:.2f} V_th in every layer: {sweep[-1]:.2f}%")
    result(f"sweep_acc_alpha{a}", sweep[-1])
snn.set_v0([0.0] * L)

fig, ax = plt.subplots(1, 3, figsize=(17, 4.5), gridspec_kw={"width_ratios": [1, 1, 1.15]})
styles = {"SNN": "o-k", "C-SNN literal": "s:C1", "C-SNN half": "s-C0",
          "IC-SNN remainder+literal": "^-C3", "IC-SNN remainder+half": "v-C4",
          "IC-SNN raw+literal": "D--C2"}
panels = [["SNN", "C-SNN literal", "C-SNN half"],
          ["SNN", "IC-SNN remainder+literal", "IC-SNN remainder+half", "IC-SNN raw+literal"]]
for a, names, title in zip(ax[:2], panels, ["(a) C-SNN: compensation only",
                                            "(b) IC-SNN: Alg. 2 reading + compensation"]):
    a.axhline(ann, color="k", ls="--", label="ANN")
    a.set_ylabel(f"test accuracy (%), {n_test} images")
    if len(Ts) == 1:                   # one T (class mode): one bar per variant, not a T axis
        vals = [acc[name, Ts[0]] for name in names]
        a.bar(range(len(names)), vals, yerr=binomial_se(vals, n_test), capsize=4, width=0.6,
              color=[styles[name][-2:].lstrip("-:") for name in names], alpha=0.8)
        a.set_xticks(range(len(names)), [name.replace(" ", "\n", 1).replace("+", " +\n") for name in names],
                     fontsize=9)
        a.set(title=f"{title}, T = {Ts[0]}", ylim=(0, 100))
        a.legend(fontsize=8, loc="upper left")
        continue
    for k, name in enumerate(names):
        vals = [acc[name, T] for T in Ts]
        dodge = 2.0 ** (0.04 * (k - (len(names) - 1) / 2))      # side by side, error bars apart
        a.errorbar(np.array(Ts) * dodge, vals, yerr=binomial_se(vals, n_test), fmt=styles[name],
                   capsize=3, label=name)
    a.set_xscale("log", base=2)
    a.set_xticks(Ts, [str(T) for T in Ts])
    a.set_xlabel("time steps T")
    a.set_title(title)
    a.legend(fontsize=8, loc="best")
ax[2].errorbar(alphas, sweep, yerr=binomial_se(sweep, n_test), fmt="o-", color="grey", capsize=3,
               label="v(0) = alpha V_th in every layer")
for name in variants:
    if name != "SNN" and -0.1 <= v0_mean[name, T_S] <= 1.1:
        ax[2].plot(v0_mean[name, T_S], acc[name, T_S], marker=styles[name][0],
                   color=styles[name][-2:], ms=9, ls="none", label=name)
ax[2].axhline(ann, color="k", ls="--", label="ANN")
ax[2].set_xlabel("v(0) / V_th (mean over layers)")
ax[2].set_ylabel(f"test accuracy (%), T = {T_S}")
ax[2].set_title(f"(c) where each variant starts, T = {T_S}")
ax[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()
savefig(fig, run, "06_compensation_accuracy.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/06_coding_compensation.py`.
#
# 1. **Predict** where IC-SNN with the `remainder` reading and the `half` compensation puts
#    v(0), and what that does at T = 8 to a neuron with a constant input of 0.3 V_th, and to
#    one whose input is +0.1 V_th at the first step and -0.1 V_th after (the ANN outputs 0).
# 2. **Show** that raising layer 1's v(0) by delta = V_th/2 moves each neuron's decoded
#    output by 0 or V_th/T, never by delta/T, and by delta/T only on average.
# 3. **Derive** the expected coding loss V_th/(2T) from the uniform assumption of Sec. 3.4,
#    and check it on the first layer with v(0) = 0.
#
# ## What you should see

# %%
see("with v(0) = 0 layer 1 rounds down by about half a step", abs(shift["none"] + 0.5) < 0.1,
    f"mean e T = {shift['none']:+.3f}")
see("half centres the error on zero; literal moves it by only 1/(2T)",
    abs(shift["half"]) < 0.1 and shift["none"] < shift["literal"] < shift["half"],
    f"literal {shift['literal']:+.3f}, half {shift['half']:+.3f}")
see("the remainder reading measures R ~ V_th/2 in every layer, with either compensation",
    all(abs(r - 0.5) < 0.15 for c in R_over for r in R_over[c]))
see("IC-SNN as printed (raw + literal) collapses", acc["IC-SNN raw+literal", Ts[0]] < acc["SNN", Ts[0]],
    f"{acc['IC-SNN raw+literal', Ts[0]]:.1f}% vs plain SNN {acc['SNN', Ts[0]]:.1f}% at T = {Ts[0]}")
best = alphas[int(np.argmax(sweep))]
see("a start near V_th/2 does best at small T", 0.25 <= best <= 0.75, f"best alpha = {best}")
see(f"remainder + half (v(0) ~ V_th) loses to remainder + literal at T = {Ts[0]}",
    acc["IC-SNN remainder+half", Ts[0]] < acc["IC-SNN remainder+literal", Ts[0]],
    f"{acc['IC-SNN remainder+half', Ts[0]]:.1f}% vs {acc['IC-SNN remainder+literal', Ts[0]]:.1f}%")
finish(run)

# %% [markdown]
# The full-size numbers for the bundled model (2,000 test images, T up to 256) are in
# `results/vgg_cpu_cifar10.md` and the README's Results.
#
# Next: `07_looking_inside.py`, the paper's Figs. 5, 6 and 7.
