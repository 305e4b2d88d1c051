# %% [markdown]
# # Solutions — Step 2

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, host, setup, solved  # noqa: E402
from icsnn_np.neurons import IFNode  # noqa: E402

run = setup("Solutions to step 2")


def run_if(current, T, v0=0.0, v_th=1.0):
    """(spike count, v(T)) of IF neurons driven by a constant ``current`` (neurons,)."""
    node = IFNode(v_th=v_th, v0=v0)
    node.reset(1, count=True)
    for _ in range(T):
        node.forward(np.asarray(current, dtype=np.float64)[None, :])
    return host(node.spike_count)[0], host(node.v)[0]


# %% [markdown]
# ## Exercise 1: I = 0.37 V_th, T = 8, v(0) = 0
#
# The charge after t steps is 0.37 t. It passes 1 at t = 3 (1.11: spike, 0.11 left) and
# 2 at t = 6 (2.22: spike, 0.22 left); at t = 8 it is 2.96, short of 3. So 2 spikes and
# v(T) = 2.96 - 2 = 0.96: almost a whole spike is stuck in the neuron. Rate 0.25 for an
# ANN value of 0.37.

# %%
count, v_T = run_if([0.37], 8)
assert count[0] == 2 and abs(v_T[0] - 0.96) < 1e-12
solved(1, f"2 spikes, v(T) = {v_T[0]:.2f} V_th")

# %% [markdown]
# ## Exercise 2: the same with v(0) = V_th/2
#
# Now the charge is 0.5 + 0.37 t: it passes 1, 2, 3 at t = 2, 5, 7, so 3 spikes and
# v(T) = 0.5 + 2.96 - 3 = 0.46. 3 is the nearest whole number to 2.96; 2 was the floor.

# %%
count, v_T = run_if([0.37], 8, v0=0.5)
assert count[0] == 3 and abs(v_T[0] - 0.46) < 1e-12
assert abs(count[0] - 2.96) < abs(2 - 2.96)
solved(2, "3 spikes (round(2.96)) instead of 2 (floor)")

# %% [markdown]
# ## Exercise 3: hard reset
#
# With I = 0.6 V_th the potential reaches 1.2 at t = 2, spikes, and is set to 0: the 0.2
# above the threshold is thrown away. It spikes every 2nd step: rate 0.5, not 0.6. For
# every I in (V_th/2, V_th] it needs exactly 2 steps, so the rate is 1/2 for all of them:
# the hard reset loses the information in the excess. The soft reset keeps it in v, which
# is why the paper (and Rueckauer et al., Han et al.) use it.

# %%
def hard_reset_count(current, T, v_th=1.0):
    v, count = np.zeros_like(current), np.zeros_like(current)
    for _ in range(T):
        v = v + current
        fired = v > v_th
        v = np.where(fired, 0.0, v)                  # hard reset: the excess is lost
        count += fired
    return count


I = np.array([0.6, 0.75, 0.9])
assert np.all(hard_reset_count(I, 100) / 100 == 0.5)
soft = run_if(I, 100)[0] / 100
assert np.allclose(soft, [0.6, 0.75, 0.9], atol=0.01)
solved(3, "hard reset: rate 0.5 for every I in (V_th/2, V_th]; soft reset: rate ~ I")

# %% [markdown]
# ## Exercise 4: the 1/T bound
#
# Sum Eq. 5 over t = 1..T with a constant current: v(T) = v(0) + T I - N V_th, N the spike
# count. So N/T = I/V_th + (v(0) - v(T))/(T V_th) (this is Eq. 11 for one neuron). With
# v(0) = 0 and 0 <= I <= V_th, v(T) stays in [0, V_th] (it starts at 0, gains at most V_th
# per step and loses V_th whenever it passes V_th), so the last term lies in [-1/T, 0].
# For I < 0 the neuron never fires: rate 0 = clip(I). For I > V_th it fires every step:
# rate 1 = clip(I). Checked on random currents and horizons:

# %%
rng = np.random.default_rng(0)
for T in (3, 8, 17, 64):
    I = rng.uniform(-0.5, 1.5, 2000)
    count, v_T = run_if(I, T)
    err = count / T - np.clip(I, 0, 1)
    assert np.all(np.abs(err) <= 1 / T + 1e-12)
    inside = (I >= 0) & (I <= 1)
    assert np.all((v_T[inside] >= -1e-12) & (v_T[inside] <= 1 + 1e-12))
solved(4, "N/T = I/V_th + (v(0) - v(T))/(T V_th) with v(T) in [0, V_th]: error in [-1/T, 0]")
finish(run)
