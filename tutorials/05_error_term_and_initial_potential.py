# %% [markdown]
# # Step 5 — The error term (Eq. 11) and the initial membrane potential
#
# **After this step you can**
#
# * state Eq. 11 and check it on a real network with `eq11_rate` and `error_term`
#   (`icsnn_np/neurons.py`): it holds to float rounding;
# * show that the error term is the *whole* difference between an SNN layer and the ANN
#   layer on the same input, that it shrinks like 1/T, and where the paper's bound on it fails;
# * set v(0) from the weights (Alg. 1) or from v(T) measured on training images (Alg. 2), and
#   explain why the literal reading of Alg. 2 breaks the network while the "remainder"
#   reading (this course's) lands at about V_th/2.
#
# Sum the IF dynamics (Eq. 5) over t = 1..T. With r^l = spikes/T the firing rate, every
# neuron of layer l satisfies, **exactly** (paper Eq. 7-11):
#
#     r^l = (W^l r^{l-1} V_th^{l-1} + b^l) / V_th^l  +  (v^l(0) - v^l(T)) / (T V_th^l)
#           '-------------------------------------'     '----------------------------'
#            mean input current I^l, over V_th^l            error term e^l (Eq. 11)
#
# Multiplied by V_th^l: the decoded output r^l V_th^l is the time-averaged input current
# plus (v(0) - v(T))/T. This is bookkeeping of the charge, not an approximation: what came
# in equals what went out in spikes plus what is still there. In code:
# `eq11_rate(mean_current, v0, v_T, v_th, T)` and `error_term(v0, v_T, v_th, T)`.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from _common import (binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.backend import to_device
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.init_mem import alg1_weight_init, alg2_data_init, record_v_T
from icsnn_np.neurons import IFNode, eq11_rate, error_term
from icsnn_np.runs.engine import use_engine
from icsnn_np.simulate import simulate

run = setup("Step 5: the error term and the initial potential", mode=MODE)
xp = run.xp

ds = load_slice()
net = get_model(run, ds)
n_test = run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=n_test)
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
use_engine(snn, "fast")      # every run of this SNN (Alg. 2's too) on the fast engine: same spikes (A1)
v_th = [float(host(n.v_th)) for n in snn.nodes]
L = len(snn.nodes)

# %% [markdown]
# ## 1. Eq. 11 holds exactly
#
# `simulate(..., record=True)` returns per IF layer the spike counts, `decoded` = count x
# V_th / T, and `v_T`. The mean input current of layer l is the layers between node l-1 and
# node l (pooling, convolution: all linear, so they commute with the time average) applied
# to node l-1's decoded output; for the first layer, to the image itself (direct coding
# feeds the image at every step).
#
# We run in float64 (`model.to(xp, np.float64)`; the SNN shares the arrays) so that the
# residual shows the identity, not float32 rounding: expect ~1e-15. In float32 the residual
# is the rounding of T additions per neuron, ~1e-6. With v(0) = 0.3 V_th too: the identity
# holds for any v(0).

# %%
def mean_currents(snn, x, layers):
    """The time-averaged input current I^l of every IF node, from the recorded decoded outputs."""
    currents, h, k = [], x, 0
    for m in snn.flat[:snn.last + 1]:
        if isinstance(m, IFNode):
            currents.append(host(h))
            h = to_device(layers[k]["decoded"].astype(host(h).dtype), xp)   # what node k sends on
            k += 1
        else:
            h = m.forward(h)                         # linear: commutes with the time average
    return currents


def eq11_terms(snn, x, T, v0s):
    """Run T steps; per layer (rate r, mean current I, error term e, both sides in rate units)."""
    snn.set_v0(v0s)
    layers = simulate(snn, x, T, record=True).layers
    currents = mean_currents(snn, x, layers)
    return [(rec["spike_count"] / T, I, error_term(host(v0), rec["v_T"], th, T))
            for rec, I, v0, th in zip(layers, currents, v0s, v_th)]


T_EQ = run.pick(8, 16)
x_few = x_test[:run.pick(16, 50, in_class=20)]
zeros = [0.0] * L
for dtype in (np.float64, np.float32):
    net.model.to(xp, dtype)                              # the SNN shares these weight arrays
    name = np.dtype(dtype).name
    for label, v0s in (("", zeros), ("_v0", [0.3 * t for t in v_th])):
        snn.set_v0(v0s)
        layers = simulate(snn, x_few.astype(dtype), T_EQ, record=True).layers
        currents = mean_currents(snn, x_few.astype(dtype), layers)
        resid = max(np.abs(rec["spike_count"] / T_EQ - eq11_rate(I, v0, rec["v_T"], th, T_EQ)).max()
                    for rec, I, v0, th in zip(layers, currents, v0s, v_th))
        print(f"{name}, v(0) = {'0.3 V_th' if label else '0'}: max |r - eq11_rate(...)| over all "
              f"layers = {resid:.2e}")
        result(f"eq11_residual_{name}{label}", resid)
snn.set_v0(zeros)
terms = eq11_terms(snn, x_few, T_EQ, zeros)            # float32 from here on
print(f"(T = {T_EQ}, {len(x_few)} images, every neuron of every layer)")

# %% [markdown]
# ## 2. The error term is the whole gap, and where the paper's bound fails
#
# Given its input I, the ANN neuron would output ReLU(I). The SNN outputs I + e V_th (Eq. 11
# times V_th). So for every neuron with I >= 0, `decoded - ReLU(I)` **is** e V_th: nothing
# else separates the two networks layer by layer. For I < 0 the error term does the ReLU's
# job: a silent neuron keeps its negative charge in v(T), so e V_th = -I exactly.
#
# That last case breaks the paper's statement (Sec. 3.3) that (v(0) - v(T))/V_th lies in
# (-1, 0): for a silent neuron it is -T I / V_th > 0, as large as the input is negative.
# Neurons above the threshold break it too, from below (their rate is clipped at 1). The
# bound holds only for v(0) = 0 and inputs in [0, V_th] (exercise 2).
#
# The first panels show each layer's transfer function as a 2-D histogram: every neuron of
# every image counted at (its mean input I / V_th, its rate r); the colour is the count, on a
# log scale. Rates come in steps of 1/T, so the counts lie on T + 1 rows. The black line is
# the ReLU clipped at V_th. Under it lies a band of height 1/T: that band is e. Counts
# *above* the line are neurons whose input was uneven in time: they fired early on positive
# current and then received negative current, ending with v(T) < 0 and a positive e. Layer 1
# has none (direct coding gives it the same current at every step); deeper layers some.
# The last panel shows the mean |e| of neurons with 0 < I < V_th against T: it falls like
# 1/T (dashed), which is why large T works and small T does not. (In a deep network the deep
# layers follow the line from T = 8 on: at T = 4 they have hardly received any input yet, so
# their few active neurons carry small errors.)

# %%
ncol = min(4, L + 1)
nrow = -(-(L + 1) // ncol)
fig, axs = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.5 * nrow), squeeze=False)
ax = axs.ravel()
for a in ax[L + 1:]:
    a.axis("off")
outside, above = [], []
for l, (r, I, e) in enumerate(terms):
    act = I >= 0
    gap = r * v_th[l] - np.maximum(I, 0)                     # decoded - ReLU(I)
    result(f"gap_minus_error_active_layer{l + 1}", np.abs(gap[act] - e[act] * v_th[l]).max())
    silent = (I < 0) & (r == 0)
    result(f"silent_error_is_minus_input_layer{l + 1}", np.abs(e[silent] * v_th[l] + I[silent]).max())
    bound = e * T_EQ                                         # (v(0) - v(T)) / V_th
    out = ((bound <= -1) | (bound > 0)).mean()
    outside.append(out)
    result(f"outside_paper_bound_layer{l + 1}", out)
    print(f"layer {l + 1}: {100 * out:.1f}% of the neurons have (v(0) - v(T))/V_th outside (-1, 0] "
          f"(largest {bound.max():+.1f}, smallest {bound.min():+.1f})")
    above.append(float((r > np.clip(I / v_th[l], 0, 1) + 1e-6).mean()))   # e > 0 with I > 0, or I < 0
    result(f"above_clipped_relu_layer{l + 1}", above[-1])
    x_edges = np.linspace(-1, 1.5, 101)                                   # I / V_th, clipped into the ends
    y_edges = (np.arange(T_EQ + 2) - 0.5) / T_EQ                          # one row per spike count
    counts = np.histogram2d(np.clip(I.ravel() / v_th[l], -1, 1.5 - 1e-9), r.ravel(),
                            bins=(x_edges, y_edges))[0]
    mesh = ax[l].pcolormesh(x_edges, y_edges, np.ma.masked_equal(counts.T, 0), cmap="viridis",
                            norm=LogNorm(vmin=1, vmax=counts.max()))
    grid = np.linspace(-1, 1.5, 101)
    ax[l].plot(grid, np.clip(grid, 0, 1), "k", lw=1.2, label="ReLU clipped at V_th")
    ax[l].set_title(f"layer {l + 1}, T = {T_EQ}: {100 * above[-1]:.2g}% above the line", fontsize=10)
    ax[l].set_xlabel("mean input current I / V_th (ends: <= -1, >= 1.5)")
    ax[l].set_ylabel("rate r = decoded / V_th")
    fig.colorbar(mesh, ax=ax[l], label="neurons x images", pad=0.02)
ax[0].legend(fontsize=7, loc="upper left")

Ts = run.pick([4, 8, 16, 32], [4, 8, 16, 32, 64, 128], in_class=[4, 8, 16, 32, 64])
err_vs_T = np.zeros((L, len(Ts)))
for j, T in enumerate(Ts):
    for l, (r, I, e) in enumerate(eq11_terms(snn, x_few, T, zeros)):
        inside = (I > 0) & (I < v_th[l])                 # above V_th the error is the clipping
        err_vs_T[l, j] = np.abs(e[inside]).mean()
for l in range(L):
    ax[L].loglog(Ts, err_vs_T[l], "o-", label=f"layer {l + 1}")
    result(f"mean_abs_error_T{Ts[0]}_layer{l + 1}", err_vs_T[l, 0])
    result(f"mean_abs_error_T{Ts[-1]}_layer{l + 1}", err_vs_T[l, -1])
ax[L].loglog(Ts, 0.5 / np.asarray(Ts, float), "k--", label="0.5 / T")
ax[L].set_xticks(Ts, [str(T) for T in Ts])
ax[L].xaxis.set_minor_locator(plt.NullLocator())
ticks = [t for t in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3) if err_vs_T.min() / 2 < t < err_vs_T.max() * 2]
ax[L].set_yticks(ticks, [f"{t:g}" for t in ticks])
ax[L].yaxis.set_minor_formatter(plt.NullFormatter())
ax[L].set_xlabel("T")
ax[L].set_ylabel("mean |e|  (neurons with 0 < I < V_th)")
ax[L].set_title("the error term shrinks like 1/T")
ax[L].legend(fontsize=7)
fig.tight_layout()
savefig(fig, run, "05_eq11_error_term.png")

# %% [markdown]
# ## 3. Cancel it with v(0): what does v(T) look like?
#
# e = (v(0) - v(T))/(T V_th) vanishes if v(0) = v(T). We cannot know each image's v(T) in
# advance, but we can measure its typical value on training images and start there: that
# is **Alg. 2**. The paper's line is `mem = l.mem.mean()`: one number per layer, the mean of
# v(T) over the layer's neurons and the images. The package implements three readings of
# it (`alg2_data_init(..., reading=...)`; README, "Readings of the paper"):
#
# * `raw`: the literal mean of v(T). Silent neurons with negative input keep piling up
#   negative charge, so v(T) has a long negative tail that drags this mean below zero.
# * `remainder`: the mean of v(T) mod V_th, in [0, V_th): *this course's reading* of the
#   paper's sentence that v(T) "is equivalent to the remainder obtained by dividing" the
#   summed potential by the threshold (Sec. 3.3); the algorithm itself prints no mod.
# * `clip`: the mean of clip(v(T), 0, V_th) (also ours).
#
# The histograms show v(T)/V_th per layer (from `record_v_T`, what Alg. 2 records) with the
# three readings. The shaded band [0, 1) is where the paper's bound puts v(T) when v(0) = 0;
# everything outside it breaks the bound. You should see a mass in [0, 1) (the leftovers of
# firing neurons) and a long negative tail (silent neurons).

# %%
T_INIT = run.pick([8], [8, 16], in_class=[8])
readings = {}
for T in T_INIT:
    snn.set_v0(zeros)
    v_T = record_v_T(snn, calib, T)   # per layer (n_calib, ...) host arrays
    readings[T] = {                                       # what alg2_data_init computes, per reading
        "raw": [float(v.mean()) for v in v_T],
        "remainder": [float(np.mod(v, th).mean()) for v, th in zip(v_T, v_th)],
        "clip": [float(np.clip(v, 0, th).mean()) for v, th in zip(v_T, v_th)],
    }
    via_alg2 = [float(host(a)) for a in alg2_data_init(snn, calib, T, reading="remainder")]
    assert np.allclose(via_alg2, readings[T]["remainder"], rtol=1e-5), (via_alg2, readings[T])
    if T == T_INIT[0]:
        ncol = min(3, L)
        nrow = -(-L // ncol)
        fig, ax = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.3 * nrow), squeeze=False)
        for l, (v, axl) in enumerate(zip(v_T, ax.ravel())):
            # values below -4 V_th and above 1.5 V_th are piled into the end bins
            axl.hist(np.clip(v.ravel() / v_th[l], -4, 1.5), bins=110, log=True, color="grey")
            axl.axvspan(0, 1, color="C2", alpha=0.12, label="paper's bound [0, 1)")
            for name, c in zip(["raw", "remainder", "clip"], ["C3", "C0", "C2"]):
                axl.axvline(readings[T][name][l] / v_th[l], color=c, lw=2, label=name)
            axl.set_title(f"layer {l + 1}: v(T) / V_th, T = {T}")
            axl.set_xlabel("v(T) / V_th  (end bins: <= -4, >= 1.5)")
            axl.set_ylabel("neurons x images (log scale)")
        for axl in ax.ravel()[L:]:
            axl.axis("off")
        fig.legend(*ax[0, 0].get_legend_handles_labels(), loc="upper center", ncol=4, fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.93))          # room for the legend above the panels
        savefig(fig, run, "05_vT_histograms.png")

# %% [markdown]
# ## 4. Alg. 1, Alg. 2, and what they do to accuracy
#
# **Alg. 1** needs no data. The paper motivates it with a neuron whose inputs all spike at
# every step (Sec. 3.3), but its printed formula, `sum_mem = W * T + b; mem = sum_mem %
# V_th; init_mem = mem.mean()`, is element-wise: every single *weight* times T plus the
# bias, each taken mod V_th, averaged over the weight tensor. That is not the charge of such
# a neuron, which would be (sum of its weights) x T + T b. `alg1_weight_init` implements the
# formula as printed. Both algorithms give one v(0) per layer; we print
# it as a fraction of V_th and measure the test accuracy of each at the same T (error bars:
# one binomial standard error). Keep an eye on `remainder` and Alg. 1: their v(0) come out
# close to V_th/2, the value step 2 found for rounding instead of flooring (exercise 3
# explains why).

# %%
cfg = ConversionConfig(batch_size=100)
ann = ann_accuracy(net.model, x_test, y_test)
result("ann_acc", ann)
table = {}
for T in T_INIT:
    cands = {"SNN (v0 = 0)": zeros, "Alg. 1": alg1_weight_init(snn, T)}
    cands.update({f"Alg. 2 {k}": v for k, v in readings[T].items()})
    for name, v0 in cands.items():
        snn.set_v0(v0)
        table[name, T] = snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        frac = ", ".join(f"{float(host(a)) / th:+.2f}" for a, th in zip(v0, v_th))
        print(f"T = {T:3d}  {name:18s} v(0)/V_th per layer [{frac}]  accuracy {table[name, T]:6.2f}%"
              f"  (ANN {ann:.2f}%)")
        key = name.replace("SNN (v0 = 0)", "snn").replace("Alg. 1", "alg1").replace("Alg. 2 ", "alg2_")
        result(f"acc_{key}_T{T}", table[name, T])
        if name != "SNN (v0 = 0)":
            for l, (a, th) in enumerate(zip(v0, v_th)):
                result(f"v0_over_vth_{key}_T{T}_layer{l + 1}", float(host(a)) / th)
snn.set_v0(zeros)

names = list(dict.fromkeys(k for k, _ in table))
fig, ax = plt.subplots(figsize=(8, 4.2))
w = 0.8 / len(T_INIT)
for j, T in enumerate(T_INIT):
    vals = [table[n, T] for n in names]
    ax.bar(np.arange(len(names)) + j * w, vals, w, yerr=binomial_se(vals, n_test), capsize=3,
           label=f"T = {T}")
ax.axhline(ann, color="k", ls="--", label="ANN")
ax.set_xticks(np.arange(len(names)) + w * (len(T_INIT) - 1) / 2, names, rotation=15)
ax.set_ylabel(f"test accuracy (%), {n_test} images")
ax.set_title("initial membrane potential: Alg. 1 and the readings of Alg. 2 (error bars: 1 s.e.)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
savefig(fig, run, "05_init_accuracy.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/05_error_term_and_initial_potential.py`.
#
# 1. **Derive** Eq. 11 from Eq. 5 (sum over t = 1..T, then use Eq. 8 and 9), and check
#    `eq11_rate` on an `IFNode` driven by a current that changes at every step.
# 2. **Show** that silent neurons break the paper's bound (v(0) - v(T))/V_th in (-1, 0):
#    what is the value for a neuron with constant input I = -0.2 V_th after T = 8 steps?
#    Which other neurons break it, and from which side?
# 3. **Explain** why the `remainder` reading lands at about V_th/2 in every layer, whatever
#    the data. (Hint: what is x mod V_th for values x spread over many multiples of V_th?)
#
# ## What you should see

# %%
resid32 = max(np.abs(r * v - I - e * v).max() for (r, I, e), v in zip(terms, v_th))
see("Eq. 11 holds to float32 rounding in every layer (float64: ~1e-15, printed above)",
    resid32 < 1e-4, f"max |decoded - (I + e V_th)| = {resid32:.1e}")
see("the error term shrinks like 1/T in every layer",
    all(err_vs_T[l, -1] < err_vs_T[l, 0] / 3 for l in range(L)),
    ", ".join(f"layer {l + 1}: {err_vs_T[l, 0]:.3f} -> {err_vs_T[l, -1]:.4f}" for l in range(L)))
see("layer 1 (constant input) has no neuron above the clipped ReLU", above[0] == 0,
    "deeper layers: " + ", ".join(f"{100 * a:.2g}%" for a in above[1:]))
see("every layer has neurons outside the paper's bound (-1, 0]", all(o > 0 for o in outside),
    ", ".join(f"{100 * o:.0f}%" for o in outside))
T0 = T_INIT[0]
see("Alg. 2's literal mean of v(T) (raw) is below zero in every layer",
    all(v < 0 for v in readings[T0]["raw"]))
see("the remainder reading lands near V_th/2 in every layer",
    all(0.35 < v / th < 0.65 for v, th in zip(readings[T0]["remainder"], v_th)),
    ", ".join(f"{v / th:.2f}" for v, th in zip(readings[T0]["remainder"], v_th)))
see(f"the remainder reading beats the raw one at T = {T0}",
    table["Alg. 2 remainder", T0] > table["Alg. 2 raw", T0],
    f"{table['Alg. 2 remainder', T0]:.1f}% vs {table['Alg. 2 raw', T0]:.1f}%")
finish(run)

# %% [markdown]
# Next: `06_coding_compensation.py`: Alg. 3 and the size of the compensation.
