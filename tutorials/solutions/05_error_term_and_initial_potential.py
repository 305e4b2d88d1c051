# %% [markdown]
# # Solutions — Step 5

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, host, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.init_mem import record_v_T  # noqa: E402
from icsnn_np.neurons import IFNode, eq11_rate, error_term  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402

run = setup("Solutions to step 5")

# %% [markdown]
# ## Exercise 1: Eq. 11 from Eq. 5
#
# Eq. 5 for one step: v(t) = v(t-1) + I(t) - theta(t) V_th, with I(t) = W x(t) + b. Add the
# T equations; the v(t) in between cancel (a telescoping sum):
#
#     v(T) = v(0) + sum_t I(t) - V_th sum_t theta(t)                          (Eq. 7)
#
# With r = sum_t theta(t) / T (Eq. 8) and sum_t x(t) = T r^{l-1} V_th^{l-1} (Eq. 9),
# sum_t I(t) = T (W r^{l-1} V_th^{l-1} + b) = T * mean current. Divide by T V_th:
#
#     r = (W r^{l-1} V_th^{l-1} + b) / V_th + (v(0) - v(T)) / (T V_th)       (Eq. 11)
#
# Nothing was assumed about the currents (sign, size, constancy) or v(0): it holds for any
# of them. Checked on 1,000 neurons with random, time-varying currents of both signs, random
# v(0) and thresholds, in float64:

# %%
rng = np.random.default_rng(0)
T, n = 13, 1000
v_th = rng.uniform(0.5, 2.0, n)
v0 = rng.uniform(-1.0, 1.0, n)
currents = rng.normal(0.3, 1.0, (T, 1, n))                       # changes at every step
node = IFNode(v_th=v_th, v0=v0)
node.reset(1, count=True)
for t in range(T):
    node.forward(currents[t])
r = host(node.spike_count)[0] / T
resid = np.abs(r - eq11_rate(currents.mean(axis=0)[0], v0, host(node.v)[0], v_th, T)).max()
print(f"max |r - eq11_rate| = {resid:.1e}")
assert resid < 1e-12
solved(1, f"sum Eq. 5 over t, divide by T V_th; eq11_rate matches to {resid:.0e}")

# %% [markdown]
# ## Exercise 2: who breaks the bound (v(0) - v(T))/V_th in (-1, 0)
#
# A silent neuron never subtracts anything: v(T) = v(0) + T I. With I = -0.2 V_th, T = 8 and
# v(0) = 0: v(T) = -1.6 V_th and (v(0) - v(T))/V_th = +1.6, above the bound (it grows with T
# and with |I|). A neuron driven above its threshold fires at every step but keeps the excess:
# v(T) = T (I - V_th), so with I = 1.5 V_th, (v(0) - v(T))/V_th = -4, below the bound. Only
# neurons with v(0) = 0 and 0 <= I <= V_th (at every step) stay inside. In the network both
# kinds are common: every ReLU that outputs 0 is a silent neuron.

# %%
node = IFNode(v_th=1.0)
node.reset(1)
for _ in range(8):
    node.forward(np.array([[-0.2, 1.5]]))
scaled = error_term(0.0, host(node.v)[0], 1.0, 8) * 8              # (v(0) - v(T)) / V_th
print(f"I = -0.2 V_th: {scaled[0]:+.2f};  I = 1.5 V_th: {scaled[1]:+.2f}")
assert np.allclose(scaled, [1.6, -4.0])

ds = load_slice()
net = get_model(run, ds)
calib, _, _ = split_data(run, ds, net, n_calib=64, n_test=1)
snn = convert(net.model)
ths = [float(t) for t in balance_thresholds(snn, net.model, calib, p=net.p)]
for l, (v, th) in enumerate(zip(record_v_T(snn, calib[:1], 8), ths)):
    b = error_term(0.0, v, th, 8) * 8
    print(f"layer {l + 1}: above the bound (silent, negative input) {100 * (b > 0).mean():.1f}%, "
          f"below it (clipped) {100 * (b <= -1).mean():.1f}%")
    assert (b > 0).mean() > 0.1
solved(2, "+1.6 for I = -0.2 V_th (silent neurons exceed it); clipped neurons fall below -1")

# %% [markdown]
# ## Exercise 3: why the remainder reading lands at V_th/2
#
# Eq. 7 for one neuron: v(T) = v(0) + Q - N V_th, with Q the total charge it received
# (the sum of its currents) and N its spike count. So, with v(0) = 0,
#
#     v(T) mod V_th = Q mod V_th        whether the neuron fired or not:
#
# the spikes only remove whole thresholds. The `remainder` reading is therefore the mean
# fractional part of Q / V_th over the layer's neurons and images. Fractional parts of a
# quantity spread smoothly over several thresholds are close to uniform on [0, 1), and a
# smooth spread that straddles 0 folds around it (-0.1 becomes 0.9, +0.1 stays 0.1): either
# way their mean is about 1/2. That is a property of the folding, not of the data, hence
# ~V_th/2 in every layer. (For a narrow spread it fails: charges all near 0.2 V_th would
# read 0.2.) Note what it means for silent neurons: mod turns a deficit of 1.3 V_th into
# 0.7 V_th of "leftover", charge that is not there. Each subpopulation need not read 1/2
# (printed below); the mixture does.

# %%
wide = rng.normal(-3.0, 2.0, 100_000)              # a broad spread, in units of V_th
narrow = rng.normal(0.2, 0.02, 100_000)
print(f"mean of x mod 1: broad spread {np.mod(wide, 1).mean():.3f}, narrow {np.mod(narrow, 1).mean():.3f}")
assert abs(np.mod(wide, 1).mean() - 0.5) < 0.01 and abs(np.mod(narrow, 1).mean() - 0.2) < 0.01
for l, (rec, th) in enumerate(zip(simulate(snn, calib[0], 8, record=True).layers, ths)):
    v, Q = rec["v_T"], rec["v_T"] + rec["spike_count"] * th        # Eq. 7 with v(0) = 0
    frac = np.mod(v, th) / th
    wrap = np.abs(frac - np.mod(Q, th) / th)
    assert np.all(np.minimum(wrap, 1 - wrap) < 1e-3)                   # v(T) = Q (mod V_th)
    print(f"layer {l + 1}: remainder / V_th: all {frac.mean():.3f}, silent neurons "
          f"{frac[rec['spike_count'] == 0].mean():.3f}, firing neurons {frac[rec['spike_count'] > 0].mean():.3f}")
    assert abs(frac.mean() - 0.5) < 0.1
solved(3, "v(T) mod V_th = (total charge) mod V_th: the mean fractional part of a broad spread is ~1/2")
finish(run)
