# %% [markdown]
# # Solutions — Step 6

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, host, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.init_mem import alg3_ic_init  # noqa: E402
from icsnn_np.neurons import IFNode  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402

run = setup("Solutions to step 6")
ds = load_slice()
net = get_model(run, ds)
calib, x_test, _ = split_data(run, ds, net, n_calib=64, n_test=run.pick(16, 50))
snn = convert(net.model)
v_th = [float(t) for t in balance_thresholds(snn, net.model, calib, p=net.p)]
L = len(snn.nodes)


def spikes(currents, v0, T):
    """Spike count of one IF neuron (V_th = 1) for a list of per-step currents."""
    node = IFNode(v_th=1.0, v0=v0)
    node.reset(1, count=True)
    for t in range(T):
        node.forward(np.array([[currents[t]]]))
    return int(host(node.spike_count)[0, 0])


# %% [markdown]
# ## Exercise 1: remainder + half puts v(0) at V_th
#
# R (remainder reading) ~ V_th/2 and C = V_th/2, so v(0) = R + C ~ V_th (measured below).
# Constant input 0.3 V_th, T = 8: the charge 1 + 0.3 t passes 1, 2, 3 at t = 1, 4, 7: 3 spikes,
# rate 0.375 for an ANN value of 0.3 (T I = 2.4: floor 2 with v(0) = 0, round 2 with
# v(0) = V_th/2, and 3 here: it rounds *up*). Input +0.1 then -0.1: v(0) + 0.1 = 1.1 > V_th,
# a spike at t = 1, then the charge only falls: one spike where the ANN says 0. With
# v(0) = V_th/2 it would reach 0.6 and never fire.

# %%
v0 = alg3_ic_init(snn, calib, 8, comp="half", reading="remainder")
v0_over = [float(host(a)) / th for a, th in zip(v0, v_th)]
print("remainder + half: v(0)/V_th per layer", np.round(v0_over, 3))
assert all(abs(v - 1.0) < 0.15 for v in v0_over)
assert [spikes([0.3] * 8, v, 8) for v in (0.0, 0.5, 1.0)] == [2, 2, 3]
blip = [0.1] + [-0.1] * 7
assert [spikes(blip, v, 8) for v in (0.0, 0.5, 1.0)] == [0, 0, 1]
solved(1, "v(0) ~ V_th: 3 spikes for T I = 2.4 (rounds up), and a spike for an ANN zero")

# %% [markdown]
# ## Exercise 2: delta/T only on average
#
# Layer 1 gets a constant current I, so its count is the number of thresholds the charge
# v(0) + t I passes in T steps. Raising v(0) by delta = V_th/2 adds one crossing for some
# neurons (those whose leftover v(T) was at least V_th/2) and none for the others: each
# decoded output moves by V_th/T or by 0, and v(T) moves by delta or delta - V_th with it.
# If the leftovers are spread evenly over [0, V_th), half the neurons gain a spike and the
# mean shift is V_th/(2T) = delta/T. Eq. 11 holds for every neuron; "delta/T" needs v(T) to
# stand still, which it does only on average, and only as far as the leftovers are even:
# small inputs are the most common (step 4's histograms), so small leftovers are too, and
# a little less than half gain a spike (the printed mean).

# %%
T = 8
dec = {}
for d in (0.0, 0.5):
    snn.set_v0([d * v_th[0]] + [0.0] * (L - 1))
    rec = simulate(snn, x_test, T, record=True).layers[0]
    dec[d] = rec["decoded"]
    if d == 0.0:
        I = rec["decoded"] + rec["v_T"] / T                    # Eq. 11 with v(0) = 0
snn.set_v0([0.0] * L)
step = (dec[0.5] - dec[0.0]) / (v_th[0] / T)                  # shift in units of V_th/T
inside = (I > 0) & (I < v_th[0])
print(f"shifts (in V_th/T): values {np.unique(np.round(step, 4))}; mean over active neurons "
      f"{step[inside].mean():.3f} (delta/T = 0.5)")
assert np.allclose(np.round(step), step, atol=1e-3) and set(np.unique(np.round(step))) <= {0.0, 1.0}
assert abs(step[inside].mean() - 0.5) < 0.1
solved(2, f"each neuron moves by 0 or V_th/T; on average by {step[inside].mean():.3f} V_th/T "
          f"(delta/T = 0.5 V_th/T for evenly spread leftovers)")

# %% [markdown]
# ## Exercise 3: the expected coding loss
#
# With v(0) = 0 and a constant I in (0, V_th), the neuron sends floor(T I / V_th) spikes
# (Sec. 3.4: a^l ~ (V_th/T) sum x(t)), so the loss a - x = I - floor(T I/V_th) V_th/T lies
# in [0, V_th/T) (the paper writes (0, V_th/T)). If T I / V_th has a fractional part that is
# uniform on [0, 1), the loss is uniform on [0, V_th/T): its mean is V_th/(2T). Measured on
# layer 1, in units of V_th/T: about 0.5 (a little less where small inputs dominate, as in
# exercise 2):

# %%
loss = (I - dec[0.0])[inside] / (v_th[0] / T)
print(f"mean loss {loss.mean():.3f} V_th/T, range [{loss.min():.3f}, {loss.max():.3f}]")
assert abs(loss.mean() - 0.5) < 0.1 and loss.min() >= -1e-4 and loss.max() <= 1 + 1e-4
solved(3, f"uniform loss on [0, V_th/T): mean V_th/(2T) (measured {loss.mean():.3f} V_th/T)")
finish(run)
