# %% [markdown]
# # Step 0 — Spiking networks in plain words, and where IC-SNN sits
#
# **After this step you can**
#
# * say what a spike, an integrate-and-fire (IF) and a leaky integrate-and-fire (LIF) neuron
#   are, and why conversion uses IF;
# * name the three families of SNN learning the paper names (synaptic plasticity such as
#   STDP, surrogate-gradient backpropagation, ANN-to-SNN conversion) and place IC-SNN in them;
# * draw the IC-SNN pipeline (the paper's Fig. 4) and say in two sentences what it adds;
# * translate the paper's symbols (its Table 1) into this package's names.
#
# No network is trained or converted here: this step runs in a second and draws two
# figures. Everything later in the course builds on the words defined here.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch

from _common import finish, host, result, savefig, see, setup
from icsnn_np.neurons import IFNode
from icsnn_np.runs.stats import E_AC_PJ, E_MAC_PJ

run = setup("Step 0: spiking networks in plain words", mode=MODE)
xp = run.xp

# %% [markdown]
# ## Spikes
#
# A neuron of an ordinary network (an *ANN*) outputs a real number, e.g. ReLU(x) = max(x, 0).
# A neuron of a *spiking* network (an *SNN*) outputs, at each time step t = 1, 2, ..., T,
# either nothing (0) or a **spike** (1). Information sits in *how many* spikes a neuron
# sends in T steps (its **firing rate** r = spikes / T, *rate coding*) or in *when* it sends
# them (*temporal coding*). This course, like the paper, uses rates.
#
# ## Integrate-and-fire (IF) and leaky integrate-and-fire (LIF)
#
# * **IF**: the neuron keeps a number, its *membrane potential* v. Each step it adds its
#   input current I(t) to v (integrate). When v passes the *threshold* V_th it emits a spike
#   and subtracts V_th from v (fire, "soft reset"). Charge is never lost: what came in either
#   left as spikes or is still in v. Its rate is therefore almost exactly clip(I, 0, V_th)/V_th
#   for a constant I: a ReLU, clipped at the threshold and scaled.
# * **LIF**: the same, but v also *leaks* towards 0 each step (v <- lambda v + I with
#   lambda < 1), like a real cell membrane. A weak input leaks away before it reaches the
#   threshold, so the neuron stays silent below I = (1 - lambda) V_th and its rate is not
#   proportional to its input.
#
# The paper (Sec. 3.1) uses IF neurons because their rate fits the ReLU of the ANN better
# than LIF's. The figure below shows both. Left: the same weak constant input, below LIF's
# silence bound: the IF neuron integrates it and fires now and then (the markers on top),
# the LIF neuron's potential levels off at I / (1 - lambda) under the threshold and it never
# fires. Right: the rate against the input. The IF neuron is the package's `IFNode`; the LIF
# neuron is written out in two lines only for this comparison (the package has no LIF).

# %%
V_TH, LAM, T = 1.0, 0.8, 30            # threshold, LIF leak factor, time steps


def if_run(current, T, v0=0.0):
    """IF neurons driven by a constant ``current`` (neurons,): spike counts (neurons,), the
    potential after each step (T, neurons) and the spikes of each step (T, neurons)."""
    node = IFNode(v_th=V_TH, v0=v0)
    node.reset(1, count=True)
    trace, fired = [], []
    for _ in range(T):
        out = node.forward(xp.asarray(current[None, :]))   # one step: integrate, fire, soft reset
        trace.append(host(node.v)[0])
        fired.append(host(out)[0] > 0)
    return host(node.spike_count)[0], np.array(trace), np.array(fired)


def lif_run(current, T, lam=LAM):
    """The same with a leak: v <- lam * v + I, then fire and soft reset (illustration only)."""
    v, count, trace, spikes = np.zeros_like(current), np.zeros_like(current), [], []
    for _ in range(T):
        v = lam * v + current                            # leak, integrate
        fired = v > V_TH
        v = v - fired * V_TH                             # fire, soft reset
        count += fired
        trace.append(v.copy())
        spikes.append(fired)
    return count, np.array(trace), np.array(spikes)


I_DEMO = np.array([0.15])               # below LIF's silence bound (1 - lambda) V_th = 0.2 V_th
n_if, v_if, s_if = if_run(I_DEMO, T)
n_lif, v_lif, s_lif = lif_run(I_DEMO, T)
plateau = I_DEMO[0] / (1 - LAM)         # where LIF's v settles: v = lam v + I
currents = np.linspace(0, 1.2, 241)
r_if = if_run(currents, T)[0] / T
r_lif = lif_run(currents, T)[0] / T

fig, ax = plt.subplots(1, 2, figsize=(12, 4.0))
steps = np.arange(1, T + 1)
ax[0].step(np.r_[0, steps], np.r_[0.0, v_if[:, 0]], where="post", color="C0", label="IF: v(t)")
ax[0].step(np.r_[0, steps], np.r_[0.0, v_lif[:, 0]], where="post", color="C1",
           label=f"LIF (lambda = {LAM}): v(t)")
ax[0].plot(steps[s_if[:, 0]], np.full(int(n_if[0]), 1.12), "v", color="C0", ms=8,
           label=f"IF spikes ({int(n_if[0])})")
ax[0].plot(steps[s_lif[:, 0]], np.full(int(n_lif[0]), 1.2), "v", color="C1", ms=8,
           label=f"LIF spikes ({int(n_lif[0])})")
ax[0].axhline(V_TH, color="red", ls="--", label="threshold V_th")
ax[0].axhline(plateau, color="C1", ls=":", label=f"LIF's resting level I / (1 - lambda) = {plateau:.2f}")
ax[0].set_ylim(-0.05, 1.7)                                  # room for the legend on top
ax[0].set_xlabel("time step t")
ax[0].set_ylabel("membrane potential v(t) / V_th")
ax[0].set_title(f"the same constant input I = {I_DEMO[0]} V_th (below LIF's bound 0.2 V_th)")
ax[0].legend(fontsize=7, loc="upper center", ncol=3)
ax[1].plot(currents, np.clip(currents, 0, V_TH) / V_TH, "k", lw=2.5, label="clip(I, 0, V_th) / V_th (ReLU)")
ax[1].step(currents, r_if, where="post", label=f"IF rate, T = {T}")
ax[1].step(currents, r_lif, where="post", label=f"LIF rate, T = {T}")
ax[1].axvspan(0, 1 - LAM, color="C1", alpha=0.12, label="LIF silent: I < (1 - lambda) V_th")
ax[1].set_xlabel("constant input current I / V_th")
ax[1].set_ylabel("firing rate r (spikes per step)")
ax[1].set_title("IF follows the ReLU, LIF does not")
ax[1].legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "00_if_vs_lif.png")

inside = (currents > 0) & (currents < V_TH)
err_if = np.abs(r_if - currents / V_TH)[inside].max()
err_lif = np.abs(r_lif - currents / V_TH)[inside].max()
result("if_rate_maxerr", err_if)
result("lif_rate_maxerr", err_lif)
result("lif_silent_below", currents[r_lif == 0].max())
result("demo_if_spikes", int(n_if[0]))
result("demo_lif_spikes", int(n_lif[0]))

# %% [markdown]
# ## Why bother: energy and event-driven hardware
#
# An ANN layer multiplies every input by a weight and adds (a multiply-accumulate, MAC) for
# every connection, every time. An SNN neuron that receives a spike only *adds* the weight
# to its potential (an accumulate, AC), and a neuron that receives nothing does nothing.
# On neuromorphic chips (e.g. Loihi, TrueNorth) neurons are event-driven: idle until a spike
# arrives (paper Sec. 1). In 45 nm CMOS a 32-bit float add costs about 0.9 pJ and a
# multiply-add about 4.6 pJ (Horowitz, ISSCC 2014; the constants `icsnn_np.runs.stats` uses for
# `python -m icsnn_np.demo --stats`). So an SNN saves energy only while its neurons spike
# rarely: the number of steps T and the firing rate decide. Fewer steps also mean a faster
# answer. That is why the paper cares about *low latency*: high accuracy at small T.

# %%
print(f"energy per accumulate {E_AC_PJ} pJ, per multiply-accumulate {E_MAC_PJ} pJ: "
      f"one MAC costs as much as {E_MAC_PJ / E_AC_PJ:.1f} accumulates")

# %% [markdown]
# ## Three families of SNN learning (the paper's Sec. 1 and 2)
#
# | family (paper section) | how | strength | weakness (as the paper sees it) |
# |---|---|---|---|
# | **synaptic plasticity** (Sec. 2.1) | learning rules from biology: Hebbian, STDP (spike-timing-dependent plasticity), SBP | biologically plausible, local | applied to shallow networks of three to five layers; hard to scale deeper |
# | **surrogate-gradient backpropagation** (Sec. 2.2) | backpropagation through the T steps; the spike's derivative (zero almost everywhere) is replaced by a smooth stand-in | few time steps | work goes into shaping the gradient function rather than the SNN itself; the stand-in gradients accumulate approximation errors |
# | **ANN-to-SNN conversion** (Sec. 2.3) | train an ordinary ReLU network, copy its weights, replace each ReLU by an IF neuron, choose thresholds | no SNN training, ANN accuracy at large T | needs many time steps: at small T accuracy collapses |
#
# The paper files *hybrids* under conversion (Sec. 2.3): Rathi et al. (its ref. [37]) convert
# and then train the SNN further with spike-based backpropagation, which brings back the
# costly training. So do methods that change the ANN for the sake of conversion: QCFS (Bu et
# al., its ref. [14]) trains the ANN with a quantised clip-floor-shift activation instead of
# the ReLU, OPI (Bu et al., ref. [38]) trains a clipping bound in the ANN and derives the
# neurons' optimal initial potential from it. (A cost the paper does not list in Sec. 2.2,
# but a common remark: backpropagation through T steps keeps every step's state, so its
# memory and time grow with T.) Conversion's problem is latency: the paper's
# Table 2 shows robust threshold balancing on VGG16 losing 82.71 points of accuracy at T = 16.
#
# **IC-SNN is a conversion method that trains nothing after the ANN**: it keeps the ANN as is
# and only changes where each IF neuron *starts*, its initial membrane potential v(0), using
# a few forward runs of the converted SNN on training images (Sec. 3.3). Its neighbours:
#
# * **a start at V_th/2** is the SNN side of QCFS and OPI, which train their ANN for it.
#   Applied to an ordinary ReLU ANN (step 6's `half`) it trains nothing. SpikingJelly 2.0
#   offers it only with channel-wise conversion, as
#   `RateCodingRecipe(channel_wise=True, half_threshold=True)` (its file
#   `spikingjelly/activation_based/ann2snn/recipes/rate_coding.py`: `HalfThresholdIFNode`
#   resets to V_th/2; the layer-wise path has no such option; checked in its GitHub source,
#   version 2.0.0.dev1);
# * **SNN Calibration** (Li et al. 2021; not in the paper) corrects the converted network from
#   the gap between ANN and SNN outputs on training images, also without training: its
#   *light* pipeline adds a per-channel correction to the bias (a current every step), its
#   *advanced* pipeline sets v(0) per *neuron* (step 8).
#
# ## The pipeline (after the paper's Fig. 4)

# %%
boxes = [  # (x, y, text, package call)
    (0.0, 1.0, "train a ReLU ANN\n(no BatchNorm, AvgPool)", "python -m icsnn_np.train"),
    (1.0, 1.0, "copy weights,\nevery ReLU -> IF neuron", "convert(model)"),
    (2.0, 1.0, "threshold balancing: V_th =\np-quantile of ReLU outputs", "balance_thresholds(..., p)"),
    (3.0, 1.0, "plain SNN\nv(0) = 0", "variant 'snn'"),
    (3.0, 0.0, "coding compensation:\nv(0) = C = V_th / 2T (as printed)", "compensation(snn, T)"),
    (2.0, 0.0, "run T steps on training\nimages, record v(T)", "record_v_T / alg2_data_init"),
    (1.0, 0.0, "R = mean of v(T) mod V_th\n(Alg. 2, this course's reading)", "reading='remainder'"),
    (0.0, 0.0, "IC-SNN: v(0) = R + C\n(Alg. 3), then test", "calibrate_variant(..., 'ic-snn')"),
]
fig, ax = plt.subplots(figsize=(13, 4.6))
W, H = 0.86, 0.62
for i, (x, y, text, code) in enumerate(boxes):
    color = "#dbe9f6" if y == 1.0 else "#fde3cf"
    ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle="round,pad=0.02",
                                fc=color, ec="k"))
    ax.text(x, y + 0.08, text, ha="center", va="center", fontsize=9)
    ax.text(x, y - 0.21, code, ha="center", va="center", fontsize=7, family="monospace", color="#333")
    if i < len(boxes) - 1:
        (x2, y2) = boxes[i + 1][:2]
        start = (x + W / 2, y) if y2 == y and x2 > x else (x - W / 2, y) if y2 == y else (x, y - H / 2)
        end = (x2 - W / 2, y2) if y2 == y and x2 > x else (x2 + W / 2, y2) if y2 == y else (x2, y2 + H / 2)
        ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", lw=1.5))
ax.text(-0.5, 1.45, "conversion (Sec. 3.1, 4.1)", fontsize=10, weight="bold", color="#1f4e79")
ax.text(-0.5, -0.48, "IC-SNN's addition: the initial membrane potential (Sec. 3.3-3.4, Alg. 2-3)",
        fontsize=10, weight="bold", color="#a0522d")
ax.set_xlim(-0.55, 3.55)
ax.set_ylim(-0.55, 1.55)
ax.axis("off")
ax.set_title("the IC-SNN pipeline after the paper's Fig. 4 (R's reading and the package calls "
             "in monospace are this course's)")
savefig(fig, run, "00_pipeline.png")

# %% [markdown]
# ## The contribution in half a page
#
# Sum the IF update over the T steps of a run. For every neuron of layer l this gives an
# exact identity (paper Eq. 11, step 5 derives it):
#
#     r^l V_th^l = W^l r^{l-1} V_th^{l-1} + b^l  +  (v^l(0) - v^l(T)) / T
#
# The first part is what the ANN computes (its affine map of the previous layer's output);
# the second, the **error term**, is the charge the neuron started with minus the charge it
# was left holding, spread over T steps. At T = 1000 it is negligible; at T = 8 it is not.
# With the usual choice v(0) = 0, a neuron whose input lies between 0 and V_th ends holding
# some charge it never got to send (0 <= v(T) < V_th): its error term is negative and its
# rate comes out too low, rounded *down*, layer after layer. A silent neuron (negative
# input) ends with v(T) < 0, a *positive* error term: that is what makes it output 0 like
# the ReLU. Step 5 counts both kinds; the second one breaks the paper's bound on the term.
#
# The paper's fix has two parts:
#
# 1. **Initial membrane potential (I-SNN, Alg. 2)**: run the converted SNN on training
#    images, record v(T) in every layer, and start every neuron of the layer at its mean.
#    Then v(0) - v(T) is about zero on average and the error term shrinks.
# 2. **Coding compensation (C-SNN, IC-SNN = Alg. 3)**: a rate with T steps can only say
#    "k spikes", so values are rounded down to a multiple of V_th/T, losing V_th/(2T) on
#    average (Sec. 3.4); add a compensation C to v(0) (Alg. 3 prints C = V_th/(2T)), measure
#    R with Alg. 2 on that network, and use v(0) = R + C.
#
# The paper reports IC-SNN losing 9.95 / 2.97 / 1.03 points against its ANN (VGG16, 92.09 %
# on CIFAR-10) at T = 8 / 16 / 32 (Table 2). Two places need reading carefully, and the
# course measures both: what Alg. 2 averages (the literal mean of v(T), or the mean of
# v(T) mod V_th, *this course's reading* of the "remainder" the text describes), and how big
# C must be (V_th/(2T) as printed, or V_th/2, *this course's* correction, step 6).
#
# **Citing the paper** (the article's own citation line: *Mathematics* 2023, 11(1), 58):
#
#     @article{li2023icsnn,
#       author  = {Li, Cuixia and Shang, Zhiquan and Shi, Li and Gao, Wenlong and Zhang, Shuyan},
#       title   = {{IC-SNN}: Optimal {ANN2SNN} Conversion at Low Latency},
#       journal = {Mathematics},
#       year    = {2023},
#       volume  = {11},
#       number  = {1},
#       pages   = {58},
#       doi     = {10.3390/math11010058}
#     }
#
# ## Notation: the paper's Table 1 in code
#
# | paper | code | meaning |
# |---|---|---|
# | l | `snn.nodes[l - 1]` | layer index (1-based in the paper, 0-based in Python) |
# | a^l | `relu_outputs(model, batches)` | ANN activations (outputs of the ReLUs) |
# | W^l, b^l | `conv.params["weight"]`, `conv.params["bias"]` (`node.source` is the layer feeding node) | weights and bias, shared by ANN and SNN |
# | max(a, 0) | `ReLU` | the ANN's activation |
# | t, T | `node.t`, the `T` of `simulate(snn, x, T)` | time step, number of steps |
# | x^l(t) | the output of the previous layer's `IFNode.forward` (spikes x V_th^{l-1}); for the first layer, the image | the input of layer l |
# | W^l x^l(t) + b^l | the `current` argument of `IFNode.forward` | input current I(t) |
# | v_temp^l(t) | `node.v` right after `node.v += current` (Eq. 4) | potential before the spike test |
# | v^l(t) | `node.v`; v(0) is `node.v0`, v(T) is `simulate(...).layers[l]["v_T"]` | membrane potential |
# | V_th^l | `node.v_th` | threshold |
# | theta^l(t) | `fired` inside `IFNode.forward`; the count is `spike_count` | spike (1) or not (0) |
# | r^l | `layers[l]["spike_count"] / T` | firing rate (Eq. 8) |
# | r^l V_th^l | `layers[l]["decoded"]` | decoded output, what the ANN's a^{l+1} should be |
# | (v(0) - v(T)) / (T V_th) | `error_term(v0, v_T, v_th, T)` | Eq. 11's error term (in units of rate) |
# | init_mem | `node.v0`, set by `snn.set_v0(...)` | initial membrane potential |
# | p | `ConversionConfig.p`, `balance_thresholds(..., p=)` | threshold quantile |
#
# ## Glossary
#
# * **soft reset**: after a spike subtract V_th from v (the paper's choice); a *hard reset*
#   would set v to 0 and throw the excess away.
# * **threshold balancing**: choose V_th per layer so the layer's values fit under it
#   (the paper cites Diehl et al. 2015, weight and threshold balancing by the maximum
#   activation, its ref. [27], and Rueckauer et al. 2017, a percentile instead of the
#   maximum, ref. [28]; this package takes the p-quantile of the ReLU outputs over training
#   images).
# * **direct coding**: the (normalised) image is the first layer's constant input current
#   at every step (the package's default). **rate coding**: the image becomes random spikes
#   whose rate is the pixel intensity (Bernoulli sampling is the package's choice; the paper
#   shows rate-coded images but not how it samples).
# * **calibration images**: training images used to set thresholds and v(0); never test images.
# * **latency**: the number of time steps T before the answer is read.
# * **loss (points)**: ANN accuracy minus SNN accuracy, as in the paper's tables.
# * **variants**: SNN (v(0) = 0), I-SNN (Alg. 2), C-SNN (compensation), IC-SNN (Alg. 3).
#
# ## Exercises
#
# Solutions: `solutions/00_spiking_networks_in_plain_words.py` (it runs and checks them).
#
# 1. **Predict**: below which constant current does the LIF neuron above (lambda = 0.8) never
#    fire, however long it runs? (Hint: where does v settle when nothing fires?)
# 2. **Derive**: with E_AC = 0.9 pJ per accumulate and E_MAC = 4.6 pJ per multiply-accumulate,
#    per connection, how many spikes per neuron per image may an SNN spend before it costs
#    more than the ANN? What firing rate is that at T = 32?
# 3. **Change**: give the IF neuron a leak (lambda = 0.95, i.e. a small one) and redraw the rate
#    curve. Where does it depart most from the ReLU?
#
# ## What you should see

# %%
see("the IF rate follows clip(I, 0, V_th)/V_th to within 1/T", err_if <= 1 / T + 1e-9,
    f"max error {err_if:.3f}, 1/T = {1 / T:.3f}")
see("the LIF neuron is silent for weak inputs and far from the ReLU", err_lif > 2 / T,
    f"silent up to I = {currents[r_lif == 0].max():.3f} V_th; max error {err_lif:.3f}")
see(f"at I = {I_DEMO[0]} V_th the IF neuron fires and the LIF neuron never does",
    n_if[0] > 0 and n_lif[0] == 0 and v_lif[:, 0].max() < V_TH,
    f"IF {int(n_if[0])} spikes in {T} steps, LIF 0; LIF's v levels off at "
    f"{v_lif[-1, 0]:.3f} V_th (I / (1 - lambda) = {plateau:.2f})")
finish(run)

# %% [markdown]
# Next: step 01 trains the ANN that the rest of the course converts (or, for the arrays
# and convolutions underneath it, the optional appendix `A1_arrays_and_convolution.py`).
