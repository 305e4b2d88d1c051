# %% [markdown]
# # Solutions — Step 7

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import (binomial_se, finish, get_model, host, load_slice, setup, solved,  # noqa: E402
                     split_data)
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.runs.evaluate import ConversionConfig, evaluate_conversion  # noqa: E402
from icsnn_np.neurons import IFNode  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402
from icsnn_np.variants import calibrate_variant  # noqa: E402

run = setup("Solutions to step 7")
ds = load_slice()
net = get_model(run, ds)
n_calib, n_test = run.pick(64, 256), run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib, n_test)

# %% [markdown]
# ## Exercise 1: one cell of Table 2
#
# `evaluate_conversion` with one variant and one T gives the cell. Its standard error is at
# most about that of the SNN accuracy, sqrt(a (1 - a) / n): the ANN is measured on the same
# images and most images are right (or wrong) for both, so the difference is less noisy
# than either accuracy. Why our number differs from the paper's 2.97:
#
# * **another network**: vgg_cpu has 6 conv layers, VGG16 16 weight layers; the error of
#   each layer is passed on and grows with depth (Eq. 15). Our ANN is also weaker (85.20 %
#   on the CIFAR-10 test set against 92.09 %), and the quick-mode network is tinier still.
# * **other readings**: the paper's literal Alg. 2 (`raw`, the mean of v(T)) breaks our
#   network (step 5); we use the `remainder` reading. Its p lies in [0.9, 0.99]; ours is the
#   model's (0.9995 for the bundled one, 0.99 for the tiny one). Its coding is "rate", ours
#   direct (step 3: rate coding costs accuracy at small T).
# * **fewer test images**: n = 200 here (100 in quick mode), so the cell carries a standard
#   error of a few points; the paper's 10,000 images give ~0.3.

# %%
cfg = ConversionConfig(T=(16,), variants=("ic-snn",), p=net.p, n_calib=n_calib, batch_size=100)
res = evaluate_conversion(net.model, np.concatenate(calib), x_test, y_test, cfg)
cell = res["variants"]["ic-snn"]["16"]
se = float(binomial_se(cell["acc"], n_test))
print(f"IC-SNN, T = 16, {net.name}: ANN {res['ann_acc']:.2f}%, SNN {cell['acc']:.2f}%, "
      f"loss {cell['loss']:.2f} +- {se:.2f} points (paper, VGG16: 2.97)")
assert abs(cell["loss"] - (res["ann_acc"] - cell["acc"])) < 0.011
assert -3 * se < cell["loss"] < 100
# the same cell by hand: thresholds, Alg. 3, simulate
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
calibrate_variant(snn, "ic-snn", 16, calib)
pred = host(simulate(snn, x_test, 16).output).argmax(axis=1)
by_hand = 100 * float((pred == y_test).mean())
print(f"by hand: {by_hand:.2f}%")
assert abs(by_hand - cell["acc"]) <= 100 / n_test + 1e-9      # at most one near-tie image apart
solved(1, f"loss {cell['loss']:.2f} +- {se:.2f} points at T = 16 (paper 2.97 on VGG16)")

# %% [markdown]
# ## Exercise 2: first spikes
#
# v(0) = 0: the charge 0.37 t passes V_th at t = 3 (1.11). v(0) = 0.5625 V_th: 0.5625 + 0.37 t
# passes it at t = 2 (1.3025). One step earlier in layer 1. A neuron of layer 2 gets no input
# at all until layer 1 fires, and then needs its own steps to reach its threshold: the
# delays add up, so the deep layers' gap between SNN and IC-SNN is larger than layer 1's
# (every layer of IC-SNN saves its own steps). It need not grow layer after layer: Fig. 6
# averages over the neurons that fired at all, and which ones fire changes from layer to
# layer and between SNN and IC-SNN (IC-SNN's head start lets weak, late neurons fire too,
# which raises its mean). In full mode (T = 32, 100 images) the gaps are 3.71, 5.13, 5.42,
# 6.10, 6.68 and 5.96 steps (from unrounded means; step 7's printed means give 3.70 and 5.14
# for the first two): they rise to layer 5 and fall at layer 6. We check the neuron,
# and that every deeper layer's gap exceeds layer 1's.

# %%
def first_spike(I, v0, T=8):
    node = IFNode(v_th=1.0, v0=v0)
    node.reset(1, record=True)
    for _ in range(T):
        node.forward(np.array([[I]]))
    return int(host(node.first_spike)[0, 0])


assert first_spike(0.37, 0.0) == 3 and first_spike(0.37, 0.5 + 1 / 16) == 2
T6 = run.pick(16, 32)
x_fs = x_test[:run.pick(50, 100)]
first = {}
for v in ("snn", "ic-snn"):
    calibrate_variant(snn, v, T6, calib)
    layers = simulate(snn, x_fs, T6, record=True).layers
    first[v] = np.array([rec["first_spike"][rec["first_spike"] > 0].mean() for rec in layers])
gap = first["snn"] - first["ic-snn"]
print("SNN - IC-SNN mean first-spike step per layer:", np.round(gap, 2))
assert gap[0] > 0 and all(g > gap[0] for g in gap[1:])
falls = [l + 1 for l in range(1, len(gap)) if gap[l] < gap[l - 1]]
solved(2, f"step 3 vs step 2; every deeper layer's gap exceeds layer 1's {gap[0]:.1f} steps (largest "
          f"{gap.max():.1f}); " + (f"it falls at layer(s) {falls}" if falls else "it grows at every layer"))

# %% [markdown]
# ## Exercise 3: spikes and energy
#
# IC-SNN starts every neuron about half a threshold closer to firing, so active neurons send
# about half a spike more (the rounding of step 2), and some near-silent neurons fire once:
# at the same T it spends *more* spikes. What it buys is accuracy at a *smaller* T, and the
# energy of an inference grows with rate x T (exercise 2 of step 0): IC-SNN at T = 8 spends
# far fewer spikes per neuron than the plain SNN at T = 32.

# %%
spent = {}
for v, T in (("snn", 8), ("ic-snn", 8), ("snn", 32)):
    calibrate_variant(snn, v, T, calib)
    rate = simulate(snn, x_test[:20], T, count=True).firing_rate()
    spent[v, T] = rate * T                                    # spikes per neuron per image
    print(f"{v:7s} T = {T:2d}: firing rate {rate:.4f}, {spent[v, T]:.3f} spikes per neuron")
assert spent["ic-snn", 8] > spent["snn", 8]
assert spent["ic-snn", 8] < spent["snn", 32]
solved(3, f"more spikes at the same T ({spent['ic-snn', 8]:.2f} vs {spent['snn', 8]:.2f} per neuron "
          f"at T = 8), far fewer than the plain SNN needs at T = 32 ({spent['snn', 32]:.2f})")

# %% [markdown]
# ## Exercise 4: the paper's slips
#
# (a) Eq. 3 reads "V(t) = V_temp(t) - V_th if V(t) > V_th": the condition tests the very
# quantity the equation defines. The text under it and Eq. 6 say what is meant: the neuron
# fires when the *temporary* potential V_temp(t) = V(t - 1) + X(t) exceeds V_th. (The same
# text also calls V(t - 1) "the temporary membrane potential at the previous moment"; it is
# the potential after the reset.) A neuron that tests V(t - 1) instead, before adding its
# input, fires each spike one step late: within T steps it sends the spikes the right neuron
# sends within T - 1, so at most one fewer, and its potential can sit above V_th for a step.
#
# (b) Sec. 4.3: "the error was only 1.77% at 128 time steps"; Table 5's IC-SNN row gives 1.61
# at T = 128 (the same sentence's "less than 10%" at 32 steps matches the table's 9.28).
#
# (c) Sec. 4.3: "experiments on CIFAR10 and CIFAR20"; Table 5's caption says CIFAR100, and
# the paper names only CIFAR10 and CIFAR100 elsewhere (Sec. 4.1.1). "CIFAR20" is a slip.
#
# (d) Sec. 3.4 calls the panels of Fig. 3 "2.a" to "2.d" (the original, then 32, 128 and
# 1,024 steps): they are Fig. 3's panels (a) to (d).

# %%
def late_count(I, T):
    """Spike count of a neuron that tests its potential *before* the input (a misread Eq. 3)."""
    v, n = 0.0, 0
    for _ in range(T):
        fire = v > 1.0                       # V(t - 1) > V_th, not V_temp(t)
        v += I - fire
        n += fire
    return n


def right_count(I, T):
    node = IFNode(v_th=1.0)
    node.reset(1, count=True)
    for _ in range(T):
        node.forward(np.array([[I]]))
    return int(host(node.spike_count)[0, 0])


currents = np.linspace(0.01, 0.99, 99)
diff = np.array([right_count(I, 8) - late_count(I, 8) for I in currents])
same_as_T_minus_1 = all(late_count(I, 8) == right_count(I, 7) for I in currents)
print(f"testing V(t - 1): {int((diff == 1).sum())} of {len(currents)} currents lose one spike in "
      f"8 steps, none loses more; = the right neuron's count in 7 steps: {same_as_T_minus_1}")
assert set(diff.tolist()) <= {0, 1} and diff.any() and same_as_T_minus_1
TABLE5_IC_SNN = {8: 35.59, 16: 17.70, 32: 9.28, 64: 3.13, 128: 1.61, 256: 0.45}   # transcribed
TEXT = {"loss at 128 steps": 1.77, "loss at 32 steps below": 10.0}                  # Sec. 4.3
assert TABLE5_IC_SNN[128] != TEXT["loss at 128 steps"] and TABLE5_IC_SNN[32] < TEXT["loss at 32 steps below"]
solved(4, "Eq. 3 must test V_temp(t) (testing V(t - 1) fires one step late, up to one spike "
          "fewer); 1.77 in the text vs 1.61 in Table 5; CIFAR20 is CIFAR100; Fig. 3's panels "
          "are called 2.a-2.d")
finish(run)
