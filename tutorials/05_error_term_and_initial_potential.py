# %% [markdown]
# # Step 5 — The error term (Eq. 11) and the initial membrane potential
#
# Sum the IF dynamics (Eq. 5) over t = 1..T. With r^l = spikes/T the firing rate, every
# neuron of layer l satisfies, **exactly** (paper Eq. 7-11):
#
#     r^l V_th^l = W^l (r^{l-1} V_th^{l-1}) + b^l  +  (v^l(0) - v^l(T)) / T
#     '--------'   '----------------------------'     '--------------------'
#      decoded              affine input I^l              error term e^l
#      output       (the time-averaged input current)
#
# The decoded output of a layer is its affine input plus an error term made of the
# potential it started with, v(0), and the potential left over at the end, v(T). This is
# not an approximation: it is bookkeeping of the charge (what came in = what went out in
# spikes + what is still there). This step
#
# 1. checks the identity on a real network (residual at float rounding),
# 2. shows that the error term is the *whole* difference between what an SNN layer outputs
#    and what the ANN layer would output on the same input, and that it shrinks like 1/T,
# 3. sets v(0) to cancel it, the paper's Sec. 3.3: **Alg. 1** (from the weights) and
#    **Alg. 2** (from v(T) measured on training images), with the three readings of what
#    Alg. 2 averages (`raw`, `remainder`, `clip`; see DESIGN.md, ambiguity 2).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from _common import get_model, host, load_slice, result, savefig, setup, split
from icsnn_np.backend import to_device
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.data import normalize
from icsnn_np.evaluate import ConversionConfig, ann_accuracy, snn_accuracy
from icsnn_np.init_mem import alg1_weight_init, alg2_data_init, record_v_T
from icsnn_np.neurons import IFNode
from icsnn_np.simulate import simulate

run = setup("Step 5: the error term and the initial potential")
xp = run.xp
t_start = time.perf_counter()

ds = load_slice()
model, mean, std = get_model(run, ds)
n_test, n_calib = run.pick(200, 300), run.pick(64, 256)
x_calib = normalize(ds.x_train[:n_calib], mean, std, xp)
x_test = normalize(ds.x_test[:n_test], mean, std, xp)
y_test = ds.y_test[:n_test]
calib = split(x_calib, 128)
snn = convert(model)
balance_thresholds(snn, model, calib, p=0.99, xp=xp)
v_th = [float(host(n.v_th)) for n in snn.nodes]
L = len(snn.nodes)

# %% [markdown]
# ## 1. Eq. 11 holds exactly
#
# `simulate(..., record=True)` returns per IF layer the spike counts, `decoded` = count x
# V_th / T, and `v_T`. The affine input of layer l is the layers between node l-1 and
# node l (pooling, convolution: all linear) applied to node l-1's decoded output — for the
# first layer, to the image itself (direct coding feeds the image at every step).
#
# We run in float64 (the whole model converted with `model.to(xp, np.float64)`) so that the
# residual shows the identity, not float32 rounding: expect ~1e-14. In float32 the residual
# is rounding of T additions per neuron, around 1e-6 to 1e-5.

# %%
def affine_inputs(snn, x, layers):
    """The time-averaged input current I^l of every IF node, from the recorded decoded outputs."""
    inputs, h, k = [], x, 0
    for m in snn.flat[:snn.last + 1]:
        if isinstance(m, IFNode):
            inputs.append(host(h))
            h = to_device(layers[k]["decoded"], xp)      # what node k sends on, time-averaged
            k += 1
        else:
            h = m.forward(h)                               # linear: commutes with the time average
    return inputs


def eq11_terms(snn, x, T, v0s):
    """Run T steps; return per layer (decoded, affine input I, error term e = (v0 - v(T))/T)."""
    snn.set_v0(v0s)
    layers = simulate(snn, x, T, record=True).layers
    inputs = affine_inputs(snn, x, layers)
    return [(host(rec["decoded"]), I, (host(v0) - host(rec["v_T"])) / T)
            for rec, I, v0 in zip(layers, inputs, v0s)]


T_EQ = run.pick(8, 16)
x_few = x_test[:run.pick(16, 50)]
zeros = [0.0] * L
for dtype in (np.float64, np.float32):
    model.to(xp, dtype)                                  # the SNN shares these weight arrays
    terms = eq11_terms(snn, x_few.astype(dtype), T_EQ, zeros)
    resid = max(np.abs(d - (I + e)).max() for d, I, e in terms)
    name = np.dtype(dtype).name
    print(f"{name}: max |decoded - (affine input + error term)| over all layers = {resid:.2e}")
    result(f"eq11_residual_{name}", resid)
    # the same check with a non-zero v(0): the identity holds for any v(0)
    terms_v0 = eq11_terms(snn, x_few.astype(dtype), T_EQ, [0.3 * t for t in v_th])
    result(f"eq11_residual_{name}_v0", max(np.abs(d - (I + e)).max() for d, I, e in terms_v0))
snn.set_v0(zeros)
print(f"(T = {T_EQ}, {len(x_few)} images, every neuron of every layer)")

# %% [markdown]
# ## 2. The error term is the whole gap
#
# Given its input I, the ANN neuron would output ReLU(I). The SNN outputs I + e. So for every
# neuron with I >= 0, `decoded - ReLU(I)` **is** e: nothing else separates the two
# networks layer by layer. For I < 0 the error term does the ReLU's job (a silent neuron
# keeps its negative charge in v(T), so e = -I exactly).
#
# The scatter plots (decoded against affine input, a random sample of neurons) show the
# layer's transfer function: the ReLU clipped at V_th (black), and the SNN's points under it
# in a band of height about V_th/T: that band is e. (Points right of I = V_th are clipped:
# their error I - V_th is the price of a threshold below the maximum, and no T removes it.)
# The last plot shows the mean |e| of neurons with 0 < I < V_th against T: it falls like
# 1/T (the dashed slope), which is why large T works and small T does not.

# %%
rng = np.random.default_rng(0)
ncol = min(4, L + 1)
fig, axs = plt.subplots(-(-(L + 1) // ncol), ncol, figsize=(3.6 * ncol, 3.4 * -(-(L + 1) // ncol)),
                        squeeze=False)
ax = axs.ravel()
for a in ax[L + 1:]:
    a.axis("off")
for l, (d, I, e) in enumerate(terms):
    act = I >= 0
    gap = d - np.maximum(I, 0)
    result(f"gap_minus_error_active_layer{l + 1}", np.abs(gap[act] - e[act]).max())
    silent = (I < 0) & (d == 0)
    result(f"silent_error_is_minus_input_layer{l + 1}", np.abs(e[silent] + I[silent]).max())
    pick = rng.choice(d.size, min(d.size, 4000), replace=False)
    ax[l].plot(I.ravel()[pick] / v_th[l], d.ravel()[pick] / v_th[l], ".", ms=2, alpha=0.4)
    grid = np.linspace(-1, 1.5, 101)
    ax[l].plot(grid, np.clip(grid, 0, 1), "k", lw=1.5, label="ReLU clipped at V_th")
    ax[l].set_xlim(-1, 1.5)
    ax[l].set_title(f"layer {l + 1}, T = {T_EQ}")
    ax[l].set_xlabel("affine input I / V_th")
    ax[l].set_ylabel("decoded SNN output / V_th")
ax[0].legend(fontsize=7, loc="upper left")

# neurons inside (0, V_th): above V_th the error is the clipping I - V_th, which no T removes
Ts = run.pick([4, 8, 16, 32], [4, 8, 16, 32, 64, 128])
err_vs_T = np.zeros((L, len(Ts)))
for j, T in enumerate(Ts):
    for l, (d, I, e) in enumerate(eq11_terms(snn, x_few, T, zeros)):
        inside = (I > 0) & (I < v_th[l])
        err_vs_T[l, j] = np.abs(e[inside]).mean() / v_th[l]
for l in range(L):
    ax[L].loglog(Ts, err_vs_T[l], "o-", label=f"layer {l + 1}")
    result(f"mean_abs_error_T{Ts[0]}_layer{l + 1}", err_vs_T[l, 0])
    result(f"mean_abs_error_T{Ts[-1]}_layer{l + 1}", err_vs_T[l, -1])
ax[L].loglog(Ts, 0.5 / np.asarray(Ts, float), "k--", label="0.5 / T")
ax[L].set_xticks(Ts, [str(T) for T in Ts])
ax[L].minorticks_off()
ax[L].set_xlabel("T")
ax[L].set_ylabel("mean |e| / V_th  (0 < I < V_th)")
ax[L].set_title("the error term shrinks like 1/T")
ax[L].legend(fontsize=7)
fig.tight_layout()
savefig(fig, run, "05_eq11_error_term.png")

# %% [markdown]
# ## 3. Cancel it with v(0): what does v(T) look like?
#
# e = (v(0) - v(T))/T vanishes if v(0) = v(T). We cannot know each image's v(T) in advance,
# but we can measure its typical value on training images and start there: that is
# **Alg. 2**. The paper's line is `mem = l.mem.mean()`: one number per layer, the mean of
# v(T) over the layer's neurons and the images. Three readings (DESIGN.md):
#
# * `raw`: the literal mean of v(T). Silent neurons with negative input keep piling up
#   negative charge, so v(T) has a long negative tail that drags this mean below zero.
# * `remainder`: the mean of v(T) mod V_th, in [0, V_th) — the paper's text calls v(T)
#   "the remainder obtained by dividing" the summed potential by the threshold.
# * `clip`: the mean of clip(v(T), 0, V_th).
#
# The histograms show v(T)/V_th per layer (from `record_v_T`, the function Alg. 2 uses)
# with the three means. You should see a mass in [0, 1) (the remainders of firing neurons)
# and a negative tail.

# %%
T_INIT = run.pick([8], [8, 32])
readings = {}
for T in T_INIT:
    snn.set_v0(zeros)
    v_T = record_v_T(snn, calib, T)                       # per layer (n_calib, ...) host arrays
    readings[T] = {
        "raw": [float(v.mean()) for v in v_T],
        "remainder": [float(np.mod(v, th).mean()) for v, th in zip(v_T, v_th)],
        "clip": [float(np.clip(v, 0, th).mean()) for v, th in zip(v_T, v_th)],
    }
    # the same numbers through the package's Alg. 2 (one reading as a check)
    via_alg2 = [float(host(a)) for a in alg2_data_init(snn, calib, T, reading="remainder")]
    assert np.allclose(via_alg2, readings[T]["remainder"], rtol=1e-5), (via_alg2, readings[T])
    if T == T_INIT[0]:
        ncol = min(3, L)
        fig, ax = plt.subplots(-(-L // ncol), ncol, figsize=(4.2 * ncol, 3.2 * -(-L // ncol)),
                               squeeze=False)
        ax = ax.reshape(1, -1)                            # panels in reading order
        for l, v in enumerate(v_T):
            # values below -4 V_th are piled into the leftmost bin
            ax[0, l].hist(np.clip(v.ravel() / v_th[l], -4, 1.5), bins=110, log=True, color="grey")
            for name, c in zip(["raw", "remainder", "clip"], ["C3", "C0", "C2"]):
                ax[0, l].axvline(readings[T][name][l] / v_th[l], color=c, lw=2, label=name)
            ax[0, l].set_title(f"layer {l + 1}: v(T) / V_th, T = {T}")
            ax[0, l].set_xlabel("v(T) / V_th  (left bin: <= -4)")
        ax[0, 0].legend(fontsize=8)
        fig.tight_layout()
        savefig(fig, run, "05_vT_histograms.png")

# %% [markdown]
# ## Alg. 1, Alg. 2, and what they do to accuracy
#
# **Alg. 1** needs no data: `mean((W*T + b) mod V_th)` over each layer's weights — the
# remainder a neuron would have if every input spiked at every step (printed literally, as
# the paper writes it). Both algorithms give one v(0) per layer; we print it as a fraction
# of V_th and measure the test accuracy of each at the same T. Keep an eye on `remainder`
# and Alg. 1: their v(0) come out close to V_th/2 — the value step 3 found for rounding
# instead of flooring.

# %%
cfg = ConversionConfig(batch_size=100)
ann = ann_accuracy(model, x_test, y_test)
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
fig, ax = plt.subplots(figsize=(7.5, 4))
w = 0.8 / len(T_INIT)
for j, T in enumerate(T_INIT):
    ax.bar(np.arange(len(names)) + j * w, [table[n, T] for n in names], w, label=f"T = {T}")
ax.axhline(ann, color="k", ls="--", label="ANN")
ax.set_xticks(np.arange(len(names)) + w * (len(T_INIT) - 1) / 2, names, rotation=15)
ax.set_ylabel("test accuracy (%)")
ax.set_title("initial membrane potential: Alg. 1 and the readings of Alg. 2")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "05_init_accuracy.png")
print(f"done in {time.perf_counter() - t_start:.0f}s")

# %% [markdown]
# **What you should see:** an Eq. 11 residual of ~1e-14 in float64 (~1e-6 in float32);
# error terms that are the whole gap and fall like 1/T; a `raw` mean below zero (the
# negative tail), `remainder` and `clip` between 0 and V_th; and better accuracy than the
# plain SNN for the readings that give a positive v(0). Which reading wins is measured, not
# assumed: the numbers above are the evidence.
#
# Next: `06_coding_compensation.py` — Alg. 3 and the size of the compensation.
