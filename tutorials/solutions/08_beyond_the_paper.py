# %% [markdown]
# # Solutions — Step 8

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, host, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert, relu_outputs  # noqa: E402
from icsnn_np.beyond.calibration import layer_errors  # noqa: E402
from icsnn_np.beyond.prerun import PreRun, cos_prerun, simulate_prerun, srp_rule  # noqa: E402
from icsnn_np.runs.engine import use_engine  # noqa: E402
from icsnn_np.runs.progress import tracking  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402

run = setup("Solutions to step 8")
xp = run.xp
ds = load_slice()
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=run.pick(48, 200))
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
v_th = [float(host(n.v_th)) for n in snn.nodes]
T = run.pick(4, 8)

# %% [markdown]
# ## Exercise 1: Eq. 11 after SNN Calibration
#
# Per neuron, decoded = mean current + (v(0) - v(T)) / T. Layer 1's mean current does not
# depend on v(0) (its input is the image), so raising v(0) by T e_c in channel c moves the
# channel's mean output by e_c - mean(v(T) after - v(T) before) / T. The error e_c - that
# is left is exactly mean(change of v(T)) / T. It is not zero because v(T) moves too: a
# neuron that gains a spike ends V_th lower, and neurons clipped at 0 or at V_th (a spike
# every step) cannot move at all.

# %%
half = [th / 2 for th in v_th]
ann = relu_outputs(net.model, [x_test])
snn.set_v0(half)
e_before = layer_errors(snn, [x_test], T, ann_outputs=ann)[0]
vt_before = simulate(snn, x_test, T, keep_v=True).layers[0]["v_T"]
snn.set_v0([half[0] + T * e_before] + half[1:])
e_after = layer_errors(snn, [x_test], T, ann_outputs=ann)[0]
vt_after = simulate(snn, x_test, T, keep_v=True).layers[0]["v_T"]
predicted = ((vt_after - vt_before) / T).mean(axis=(0, 2, 3)).reshape(-1, 1, 1)
gap = float(np.abs(e_after - predicted).max())
print(f"layer 1: max |error left - mean dv(T)/T| = {gap:.1e} (float32 rounding); mean |error| "
      f"{np.abs(e_before).mean():.4f} -> {np.abs(e_after).mean():.4f}")
assert gap < 1e-4 * v_th[0] and np.abs(e_after).mean() < np.abs(e_before).mean()
solved(1, "the error left is mean(v(T) after - v(T) before) / T per channel, by Eq. 11")

# %% [markdown]
# ## Exercise 2: the cost of a pre-run
#
# The runner (`runs.engine.simulator`) reports every image-step to the progress tracker: rho
# pre-run steps and T counted ones per image. `PreRunResult.firing_rate()` counts the
# pre-run's spikes and steps too; over the counted steps alone the rate is
# sum(spikes) / (images x T x neurons). The two come out about the same because the pre-run
# *is* the same network on the same image from the same start (V_th/2): per step its
# neurons fire about as often as in the counted steps, and the rate over all steps is the
# steps-weighted mean of the two. What the pre-run does cost is steps: rho + T = 12 steps
# against T = 8 at rho = 4 (full mode), about (rho + T) / T = 1.5 times the spikes, so the
# energy, and 1.5 times the latency.

# %%
rho = 4
snn.set_v0(half)
with tracking(1, lambda s: None) as done:
    res = simulate_prerun(use_engine(snn, "fast"), x_test, T, cos_prerun(rho), count=True)
per_image = done.done / len(x_test)
n_neurons = len(x_test) * sum(res.neurons)
counted_only = sum(res.spikes) / (n_neurons * T)
prerun_only = sum(res.prerun_spikes) / (n_neurons * rho)
ratio = res.total_spikes() / sum(res.spikes)
print(f"{per_image:.0f} steps per image = rho + T = {rho} + {T}; firing rate per step: "
      f"{res.firing_rate():.4f} over all steps, {counted_only:.4f} over the counted ones, "
      f"{prerun_only:.4f} over the pre-run's")
print(f"spikes per image: {sum(res.spikes) / len(x_test):.0f} counted, "
      f"{res.total_spikes() / len(x_test):.0f} with the pre-run ({ratio:.2f} x; "
      f"(rho + T) / T = {(rho + T) / T:.2f})")
assert per_image == rho + T and res.steps == rho + T
assert abs(res.firing_rate() - (rho * prerun_only + T * counted_only) / (rho + T)) < 1e-12
assert ratio > 1
solved(2, f"a COS run costs rho + T = {rho + T} steps per image against {T}; its rate per step "
          f"hardly moves (the pre-run fires like the counted steps), its spikes grow {ratio:.2f} x")

# %% [markdown]
# ## Exercise 3: SRP in the first layer
#
# Direct coding gives a first-layer neuron the same current I at every step. From
# v(0) = V_th/2, after tau steps v(tau) = V_th/2 + tau I - n V_th with n its spikes. If
# I > 0 it only fires while v > V_th, so v stays above 0 (a spike leaves v_temp - V_th > 0):
# v(tau) > 0, and the neuron is kept. So SRP silences only neurons with I <= -V_th/(2 tau)
# < 0, whose ANN output ReLU(I) is 0. In deeper layers the current changes from step to
# step (the spikes of the layer below arrive unevenly): a neuron with a positive mean input
# can still end the pre-run at or below 0, and SRP silences a neuron the ANN keeps.

# %%
seen = []
simulate_prerun(snn, x_test, T, PreRun(rho, lambda *state: seen.append(srp_rule(*state)) or seen[-1]))
precision = []
for (_, gate), a in zip(seen, ann):
    off = ~host(gate).astype(bool)
    precision.append(float((a[off] == 0).mean()) if off.any() else 1.0)
print("share of the silenced neurons with ANN output 0, per layer: "
      + " ".join(f"{100 * p:.1f}%" for p in precision))
assert precision[0] == 1.0
solved(3, "layer 1: SRP silences only ANN zeros (a constant current never ends a pre-run at "
          f"<= 0 when positive); deeper layers: {100 * min(precision[1:]):.1f}% at worst")
finish(run)
