# %% [markdown]
# # Step 2 — The integrate-and-fire neuron
#
# **After this step you can**
#
# * run an IF neuron step by step with `IFNode` and read its membrane potential and spikes;
# * explain why its firing rate is a clipped ReLU, in steps of 1/T, and bound the error;
# * say why the initial potential v(0) matters: v(0) = 0 rounds every value *down*,
#   v(0) = V_th/2 rounds it to the nearest step (this course's reading of the paper's coding
#   compensation, Sec. 3.4, whose Alg. 3 prints V_th/(2T); step 6 measures both).
#
# A spiking network replaces every ReLU by a layer of **integrate-and-fire (IF) neurons**
# (paper Sec. 3.1-3.2). At each time step t = 1..T a neuron of layer l adds its input
# current to its membrane potential, fires if it passed the threshold, and subtracts the
# threshold when it fires ("soft reset"). In the paper's notation, with the current
# I(t) = W^l x^l(t) + b^l:
#
#     v_temp(t) = v(t-1) + I(t)                        (Eq. 4)
#     theta(t)  = 1 if v_temp(t) > V_th else 0          (Eq. 6)
#     v(t)      = v_temp(t) - theta(t) * V_th           (Eq. 5, soft reset)
#
# `icsnn_np.neurons.IFNode.forward` is these three lines for a whole layer at once, one
# time step per call; its output is theta(t) * V_th (a spike carries the threshold's value
# into the next layer, see step 4).

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import matplotlib.pyplot as plt
import numpy as np

from _common import finish, host, result, savefig, see, setup
from icsnn_np.neurons import IFNode

run = setup("Step 2: the integrate-and-fire neuron", mode=MODE)
xp = run.xp

# %% [markdown]
# ## One neuron, step by step
#
# Here the layer has one neuron and the batch one sample. `reset(n)` starts a run; each
# `forward` call is one time step (so we can read `node.v` after every step). A constant
# current of 0.37 V_th should give a spike roughly every 2.7 steps, and the potential should
# rise in a saw-tooth and drop by V_th at each spike.

# %%
V_TH, T_DEMO, I_DEMO = 1.0, 24, 0.37
node = IFNode(v_th=V_TH)
node.reset(1)
v_temp, v_after, spikes = [], [], []
for t in range(T_DEMO):
    out = node.forward(xp.full((1, 1), I_DEMO))         # one step: (1 sample, 1 neuron)
    s = float(host(out)[0, 0])                            # spike * V_th (host: for plotting)
    v_after.append(float(host(node.v)[0, 0]))
    v_temp.append(v_after[-1] + s)                        # undo the reset: Eq. 4's v_temp
    spikes.append(s > 0)
n_spikes = int(np.sum(spikes))
print(f"{n_spikes} spikes in {T_DEMO} steps: rate {n_spikes / T_DEMO:.3f}, "
      f"I/V_th = {I_DEMO / V_TH:.3f}, final v(T) = {v_after[-1]:.2f} (the charge not yet spent)")
result("demo_rate", n_spikes / T_DEMO)
result("demo_v_T", v_after[-1])

t_axis = np.arange(1, T_DEMO + 1)
fig, ax = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
ax[0].step(np.r_[0, t_axis], np.r_[0.0, v_after], where="post", color="C0", label="v(t) after reset")
ax[0].plot(t_axis, v_temp, "o", color="C1", ms=4, label="v_temp(t) before the spike test")
ax[0].axhline(V_TH, color="red", ls="--", label="V_th")
ax[0].set_ylabel("membrane potential / V_th")
ax[0].set_ylim(top=1.8)                                   # a free band for the legend
ax[0].legend(loc="upper center", ncol=3, fontsize=8)
ax[0].set_title(f"IF neuron, constant input I = {I_DEMO} V_th")
ax[1].vlines(t_axis[np.array(spikes)], 0, 1, color="k")
ax[1].set_yticks([])
ax[1].set_ylabel("spikes")
ax[1].set_xlabel("time step t")
fig.tight_layout()
savefig(fig, run, "02_if_neuron.png")

# %% [markdown]
# ## Rate against input: a clipped ReLU, in steps of 1/T
#
# Now 401 neurons at once, each with its own constant current from -0.5 V_th to 1.5 V_th.
# Charge is conserved: after T steps, T I = (spikes) V_th + v(T) - v(0). With v(0) = 0 and
# 0 <= I <= V_th the leftover v(T) stays in [0, V_th], so the neuron fires floor(T I / V_th)
# times (one fewer when T I / V_th is a whole number: the test is strict, v_temp > V_th).
# Its rate is a **staircase** under the line clip(I, 0, V_th)/V_th with steps of 1/T: the
# error is at most 1/T. Negative currents give no spikes (the ReLU); currents above V_th
# cannot give more than one spike per step (the clip).

# %%
currents = np.linspace(-0.5, 1.5, 401) * V_TH
target = np.clip(currents, 0, V_TH) / V_TH


def firing_rate(current, T, v0=0.0):
    """Spike count / T of IF neurons driven by a constant ``current`` (neurons,) for T steps."""
    nd = IFNode(v_th=V_TH, v0=v0)
    nd.reset(1, count=True)
    I = xp.asarray(current[None, :])                     # (1 sample, neurons)
    for _ in range(T):
        nd.forward(I)                                     # one step: integrate, fire, reset
    return host(nd.spike_count)[0] / T


Ts = [4, 8, 32, 256]
fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
ax[0].plot(currents, target, "k", lw=2.5, label="clip(I, 0, V_th) / V_th")
ax[0].set_xlabel("input current I / V_th")
ax[0].set_ylabel("firing rate r (spikes per step)")
ax[0].set_title("firing rate vs input: a clipped ReLU in steps of 1/T")
maxerr = {}
for T in Ts:
    r = firing_rate(currents, T)
    maxerr[T] = np.abs(r - target).max()
    print(f"T = {T:4d}: max |rate - clip(I)/V_th| = {maxerr[T]:.4f}  (bound 1/T = {1 / T:.4f})")
    result(f"rate_maxerr_T{T}", maxerr[T])
    ax[0].step(currents, r, where="post", lw=1.2, label=f"T = {T}")

# %% [markdown]
# ## A first look at the fix: start half-way to the threshold
#
# The staircase is always *below* the line: with v(0) = 0 the neuron rounds down, losing
# V_th/(2T) on average. Starting at v(0) = V_th/2 turns rounding down into rounding to the
# nearest step: the error drops to 1/(2T) at most and averages zero. The right panel shows
# it for T = 8.
#
# Who says what: the paper (Sec. 3.4) names this loss, V_th/(2T) on average, and its Alg. 3
# adds a *compensation* of V_th/(2T) to v(0) (lines 5 and 9). A start at **V_th/2** is *this
# course's reading*: by Eq. 11 a shift of v(0) moves the rate by only shift/(T V_th), so
# cancelling V_th/(2T) takes V_th/2 (QCFS and OPI, which train their ANN for it, start their
# neurons there too; step 0). Step 6 measures both sizes on a whole network.

# %%
T8 = 8
inside = (currents > 0) & (currents < V_TH)
signed = {}
for v0, name in [(0.0, "0"), (V_TH / 2, "half")]:
    r = firing_rate(currents, T8, v0)
    signed[name] = (r - target)[inside].mean() * T8
    print(f"T = {T8}, v(0) = {name:4s}: max error {np.abs(r - target).max():.4f}, "
          f"mean signed error x T = {signed[name]:+.3f}")
    result(f"rate_maxerr_T{T8}_v0_{name}", np.abs(r - target).max())
    result(f"rate_meanerr_times_T_T{T8}_v0_{name}", signed[name])
    ax[1].step(currents, r, where="post", label=f"T = {T8}, v(0) = {'V_th/2' if v0 else '0'}")
ax[1].plot(currents, target, "k", lw=2, label="clip(I, 0, V_th) / V_th")
ax[1].set_xlim(-0.1, 1.1)
ax[1].set_xlabel("input current I / V_th")
ax[1].set_ylabel("firing rate r (spikes per step)")
ax[1].set_title("v(0) = V_th/2 rounds instead of flooring")
for a in ax:
    a.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "02_rate_vs_input.png")

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/02_if_neuron.py`.
#
# 1. **Predict** how many spikes an IF neuron with v(0) = 0 fires for a constant current
#    I = 0.37 V_th over T = 8 steps, and its v(T). Check with `IFNode`.
# 2. **Predict** the same with v(0) = V_th/2. Which is closer to T I / V_th = 2.96?
# 3. **Change** the neuron to a *hard* reset (v = 0 after a spike, the excess thrown away).
#    Predict its rate for I = 0.6 V_th and check. Why does the paper use the soft reset?
# 4. **Derive** from Eq. 5 summed over T steps why |rate - clip(I)/V_th| <= 1/T for
#    v(0) = 0 and a constant current.
#
# ## What you should see

# %%
see("the rate error never exceeds 1/T", all(maxerr[T] <= 1 / T + 1e-9 for T in Ts),
    ", ".join(f"T={T}: {maxerr[T]:.4f}" for T in Ts))
see("with v(0) = 0 the neuron rounds down by half a step on average",
    abs(signed["0"] + 0.5) < 0.1, f"mean signed error x T = {signed['0']:+.3f}")
see("with v(0) = V_th/2 it rounds to the nearest step", abs(signed["half"]) < 0.1,
    f"mean signed error x T = {signed['half']:+.3f}")
finish(run)

# %% [markdown]
# Next: `03_rate_coding.py`, how an image becomes the input of the first layer.
