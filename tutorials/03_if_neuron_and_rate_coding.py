# %% [markdown]
# # Step 3 — The integrate-and-fire neuron and rate coding
#
# A spiking network replaces every ReLU by an **integrate-and-fire (IF) neuron** (paper
# Sec. 3.1, Eq. 2-6). At each time step t = 1..T the neuron adds its input current I(t) to
# its membrane potential v; when v passes the threshold V_th it emits a spike and subtracts
# V_th ("soft reset"):
#
#     v_temp(t) = v(t-1) + I(t)                        (Eq. 2)
#     theta(t)  = 1 if v_temp(t) > V_th else 0          (Eq. 6)
#     v(t)      = v_temp(t) - theta(t) * V_th           (Eq. 3, soft reset)
#
# Over T steps the neuron's **firing rate** r = (number of spikes)/T approximates
#
#     r ~= clip(I, 0, V_th) / V_th        (a ReLU, clipped at V_th, divided by V_th)
#
# for a constant current I. That is why an SNN can imitate a ReLU network: the *rate* of
# each neuron carries the ANN's activation. This step measures how good the approximation
# is for a given T, and shows the paper's Fig. 3: images coded as spike trains.

# %%
import matplotlib.pyplot as plt
import numpy as np

from _common import host, load_slice, result, savefig, setup
from icsnn_np.data import channel_stats, normalize
from icsnn_np.neurons import IFNode
from icsnn_np.simulate import rate_encode

run = setup("Step 3: the IF neuron and rate coding")
xp = run.xp

# %% [markdown]
# ## One neuron, step by step
#
# `IFNode` is a whole layer of IF neurons; here the layer has one neuron and the batch one
# sample. `reset(n)` starts a run; `chunk` says how many time steps one `forward` call
# integrates (1 here, so we can read v after every step); the output is `theta(t) * V_th`.
# A constant current of 0.37 V_th should give a spike roughly every 2.7 steps, and the
# potential should rise in a saw-tooth and drop by V_th at each spike.

# %%
V_TH, T_DEMO, I_DEMO = 1.0, 24, 0.37
node = IFNode(v_th=V_TH)
node.reset(1)
node.chunk = 1
v_temp, v_after, spikes = [], [], []
for t in range(T_DEMO):
    out = node.forward(xp.full((1, 1), I_DEMO))         # one step: (1 sample, 1 neuron)
    s = float(host(out)[0, 0])                            # spike * V_th (host: for plotting)
    v_after.append(float(host(node.v)[0, 0]))
    v_temp.append(v_after[-1] + s)
    spikes.append(s > 0)
n_spikes = int(np.sum(spikes))
print(f"{n_spikes} spikes in {T_DEMO} steps: rate {n_spikes / T_DEMO:.3f}, "
      f"I/V_th = {I_DEMO / V_TH:.3f}, final v(T) = {v_after[-1]:.2f} (the charge not yet spent)")
result("demo_rate", n_spikes / T_DEMO)

t_axis = np.arange(1, T_DEMO + 1)
fig, ax = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
ax[0].step(np.r_[0, t_axis], np.r_[0.0, v_after], where="post", color="C0", label="v(t) after reset")
ax[0].plot(t_axis, v_temp, "o", color="C1", ms=4, label="v_temp(t) before the spike test")
ax[0].axhline(V_TH, color="red", ls="--", label="V_th")
ax[0].set_ylabel("membrane potential")
ax[0].legend(loc="upper right", fontsize=8)
ax[0].set_title(f"IF neuron, constant input I = {I_DEMO} V_th")
ax[1].vlines(t_axis[np.array(spikes)], 0, 1, color="k")
ax[1].set_yticks([])
ax[1].set_ylabel("spikes")
ax[1].set_xlabel("time step t")
fig.tight_layout()
savefig(fig, run, "03_if_neuron.png")

# %% [markdown]
# ## Rate against input: a clipped ReLU, in steps of 1/T
#
# Now 401 neurons at once, each with its own constant current from -0.5 V_th to 1.5 V_th.
# A current that is the same at every step can be passed once (shape `(N, neurons)`) with
# `chunk = T`. With v(0) = 0 a neuron fires floor(t * I / V_th) times in t steps, so its
# rate is a **staircase** under the line clip(I, 0, V_th)/V_th, with steps of height 1/T:
# the error is at most 1/T, and 1/(2T) on average. Negative currents give no spikes (the
# ReLU); currents above V_th cannot give more than one spike per step (the clip).

# %%
currents = np.linspace(-0.5, 1.5, 401) * V_TH
target = np.clip(currents, 0, V_TH) / V_TH


def firing_rate(current, T, v0=0.0):
    """Spike count / T of IF neurons driven by a constant ``current`` (neurons,) for T steps."""
    nd = IFNode(v_th=V_TH, v0=v0)
    nd.reset(1, count=True)
    nd.chunk = T
    nd.forward(xp.asarray(current[None, :]))            # (1, neurons): the same every step
    return host(nd.spike_count)[0] / T


Ts = [4, 8, 32, 256]
fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
ax[0].plot(currents, target, "k", lw=2.5, label="clip(I, 0, V_th) / V_th")
for T in Ts:
    r = firing_rate(currents, T)
    err = np.abs(r - target).max()
    print(f"T = {T:4d}: max |rate - clip(I)/V_th| = {err:.4f}  (bound 1/T = {1 / T:.4f})")
    result(f"rate_maxerr_T{T}", err)
    ax[0].step(currents, r, where="post", lw=1.2, label=f"T = {T}")
ax[0].set_xlabel("input current I / V_th")
ax[0].set_ylabel("firing rate r")
ax[0].set_title("firing rate vs input: a clipped ReLU in steps of 1/T")
ax[0].legend(fontsize=8)

# %% [markdown]
# ## A first look at the fix: start half-way to the threshold
#
# The staircase is always *below* the line: with v(0) = 0 the neuron rounds down, losing
# V_th/(2T) on average. Starting at v(0) = V_th/2 turns rounding down into rounding to the
# nearest step: the error drops to 1/(2T) at most and averages zero. The right panel shows
# it for T = 8. Keep this in mind: it is the *coding compensation* of step 6 (paper
# Sec. 3.4), and the reason the paper cares about the initial potential v(0) at all.

# %%
T8 = 8
inside = (currents > 0) & (currents < V_TH)
for v0, name in [(0.0, "0"), (V_TH / 2, "half")]:
    r = firing_rate(currents, T8, v0)
    signed = (r - target)[inside].mean()
    print(f"T = {T8}, v(0) = {name:4s}: max error {np.abs(r - target).max():.4f}, "
          f"mean signed error x T = {signed * T8:+.3f}")
    result(f"rate_maxerr_T{T8}_v0_{name}", np.abs(r - target).max())
    result(f"rate_meanerr_times_T_T{T8}_v0_{name}", signed * T8)
    ax[1].step(currents, r, where="post", label=f"T = {T8}, v(0) = {name}")
ax[1].plot(currents, target, "k", lw=2, label="clip(I, 0, V_th) / V_th")
ax[1].set_xlim(-0.1, 1.1)
ax[1].set_xlabel("input current I / V_th")
ax[1].set_title("v(0) = V_th/2 rounds instead of flooring")
ax[1].legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "03_rate_vs_input.png")

# %% [markdown]
# ## Rate-coded images (the paper's Fig. 3)
#
# The paper feeds images as spike trains: each pixel of intensity p in [0, 1] spikes at
# each step with probability p (Bernoulli). Averaging the spikes over T steps gives back the
# image, with a noise of standard deviation sqrt(p (1 - p) / T). `rate_encode` does this for
# a normalised batch (it returns normalised spikes; we undo the normalisation to show them).
# You should see a single time step as a speckle of saturated colours, a grainy image at
# T = 32, and at T = 1024 an image very close to the original: at low T the coding itself
# loses information.

# %%
ds = load_slice()
mean, std = channel_stats(ds.x_train)
idx = 13                                                    # a white horse from the test set
img = ds.x_test[idx:idx + 1]                                 # uint8 (1, 3, 32, 32)
x = normalize(img, mean, std, xp)
p = img[0].astype(np.float64) / 255.0                        # (3, 32, 32) intensity
panels = [("original", p)]
for T in [1, 32, 128, 1024]:
    coded = host(rate_encode(x, mean, std, t0=0, Tc=T, seed=0))      # (T, 3, 32, 32) normalised
    bits = coded * std.reshape(1, 3, 1, 1) + mean.reshape(1, 3, 1, 1)  # back to 0 / 1 spikes
    avg = bits.mean(axis=0)
    rmse = float(np.sqrt(np.mean((avg - p) ** 2)))
    expect = float(np.sqrt(np.mean(p * (1 - p)) / T))
    print(f"T = {T:5d}: rms error of the time-averaged image {rmse:.4f} "
          f"(Bernoulli theory sqrt(p(1-p)/T): {expect:.4f})")
    if T > 1:
        result(f"rate_code_rmse_T{T}", rmse)
    panels.append(("1 step (spikes)" if T == 1 else f"T = {T}", avg))

fig, ax = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
for a, (title, im) in zip(ax, panels):
    a.imshow(np.clip(im.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    a.set_title(title)
    a.axis("off")
fig.suptitle(f"rate coding of a CIFAR-10 {ds.classes[ds.y_test[idx]]} (paper Fig. 3)")
fig.tight_layout()
savefig(fig, run, "03_rate_coded_images.png")

# %% [markdown]
# **What you should see printed:** the rate error never exceeds 1/T; with v(0) = V_th/2 the
# mean signed error is about zero instead of about -0.5/T; the coded image's rms error falls
# like 1/sqrt(T) and matches the Bernoulli formula.
#
# Next: `04_threshold_balancing_and_conversion.py` turns a whole ANN into an SNN.
