# %% [markdown]
# # Solutions — Step 0
#
# Each answer is derived first, then checked by running the code; the script stops with an
# AssertionError if a check fails. `python tutorials/solutions/00_*.py --quick` (seconds).

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402
from icsnn_np.runs.stats import E_AC_PJ, E_MAC_PJ  # noqa: E402

run = setup("Solutions to step 0")


def lif_rate(current, T, lam, v_th=1.0):
    """Firing rate of LIF neurons (v <- lam v + I, soft reset) for a constant current."""
    v, count = np.zeros_like(current), np.zeros_like(current)
    for _ in range(T):
        v = lam * v + current
        fired = v > v_th
        v -= fired * v_th
        count += fired
    return count / T


# %% [markdown]
# ## Exercise 1: when does the LIF neuron stay silent?
#
# While it does not fire, v(t) = I (1 + lam + ... + lam^(t-1)) = I (1 - lam^t) / (1 - lam),
# which rises towards I / (1 - lam) and never beyond. It fires only if that limit exceeds
# V_th: I > (1 - lam) V_th = 0.2 V_th for lam = 0.8. Just below, it never fires; just above,
# it fires, but only after many steps (the approach is slow near the limit).

# %%
lam = 0.8
edge = (1 - lam) * 1.0
assert lif_rate(np.array([edge - 1e-3]), 5000, lam)[0] == 0            # never, however long
assert lif_rate(np.array([edge + 1e-3]), 5000, lam)[0] > 0
solved(1, f"silent below I = (1 - lambda) V_th = {edge:.2f} V_th")

# %% [markdown]
# ## Exercise 2: the energy break-even
#
# Per connection the ANN pays one multiply-accumulate per image: E_MAC. The SNN pays one
# accumulate per spike that travels along it: (spikes per neuron) x E_AC. Break-even:
# spikes = E_MAC / E_AC = 4.6 / 0.9 = 5.1 spikes per neuron per image, i.e. a firing rate of
# 5.1 / T, 0.16 at T = 32. Below that the SNN is cheaper (ignoring memory traffic and the
# neurons' own updates, as `icsnn_np.runs.stats` says). We also measure the rate of a converted
# network (plain SNN, T = 32, 20 test images): it is below the break-even.

# %%
spikes_even = E_MAC_PJ / E_AC_PJ
rate_even = spikes_even / 32
assert abs(spikes_even - 5.11) < 0.01 and abs(rate_even - 0.16) < 0.001
ds = load_slice()
net = get_model(run, ds)
calib, x_test, _ = split_data(run, ds, net, n_calib=64, n_test=20)
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
rate = simulate(snn, x_test, 32, count=True).firing_rate()
print(f"break-even: {spikes_even:.2f} spikes per neuron, rate {rate_even:.3f} at T = 32; "
      f"measured rate of the converted {net.name}: {rate:.3f}")
assert 0 < rate < rate_even
solved(2, f"{spikes_even:.2f} spikes per neuron per image, rate {rate_even:.3f} at T = 32 "
          f"(measured: {rate:.3f})")

# %% [markdown]
# ## Exercise 3: a small leak
#
# With lam = 0.95 the silent range shrinks to I < 0.05 V_th, and that is where the rate
# departs most from the ReLU: at the weakest inputs, where the leak takes a larger share
# of what comes in. (With T = 30 steps a neuron just above 0.05 V_th has not yet reached
# the threshold, so the silent range reaches a little further.)

# %%
I = np.linspace(0, 1.2, 1201)
err = np.clip(I, 0, 1) - lif_rate(I, 30, 0.95)
worst = I[err.argmax()]
print(f"largest shortfall {err.max():.3f} at I = {worst:.3f} V_th")
assert worst < 0.1 and err[I > 0.3].max() < err.max()
solved(3, f"largest departure at the weakest inputs (I = {worst:.3f} V_th, just above "
          f"the silent range)")
finish(run)
