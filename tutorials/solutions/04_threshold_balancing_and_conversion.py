# %% [markdown]
# # Solutions — Step 4

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert, relu_outputs  # noqa: E402
from icsnn_np.runs.evaluate import ConversionConfig, snn_accuracy  # noqa: E402

run = setup("Solutions to step 4")
ds = load_slice()
net = get_model(run, ds)
n_test = run.pick(100, 200)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=n_test)
snn = convert(net.model)
ths = [float(t) for t in balance_thresholds(snn, net.model, calib, p=net.p)]
acts = relu_outputs(net.model, calib)

# %% [markdown]
# ## Exercise 1: the fraction above the threshold
#
# V_th is the p-quantile of the calibration outputs (zeros included), so by definition a
# fraction 1 - p of them lies above it: 1 % for p = 0.99, 0.05 % for p = 0.9995 (up to ties
# and the quantile's interpolation). Test images are other images: the fraction is close but
# not equal.

# %%
test_acts = relu_outputs(net.model, [x_test])
for l, (a, b, th) in enumerate(zip(acts, test_acts, ths)):
    above, above_test = (a > th).mean(), (b > th).mean()
    print(f"layer {l + 1}: above V_th {100 * above:.3f}% (calibration), {100 * above_test:.3f}% (test); "
          f"1 - p = {100 * (1 - net.p):.3f}%")
    assert abs(above - (1 - net.p)) < 1e-3
    assert above_test < 5 * (1 - net.p)
solved(1, f"1 - p = {100 * (1 - net.p):.2f}% on the calibration images; about that on test images")

# %% [markdown]
# ## Exercise 2: p = 0.9 in a mostly silent layer
#
# With a fraction z of zeros, the p-quantile of all outputs is the (p - z)/(1 - z)-quantile
# of the non-zero ones. For z = 0.85 and p = 0.9 that is the 1/3-quantile: two thirds of the
# active neurons would sit above V_th and be clipped. If z >= p the quantile is 0 and
# `balance_thresholds` falls back to the layer's maximum. We check the formula on every
# layer of the model.

# %%
for l, a in enumerate(acts):
    z = (a == 0).mean()
    q_all = np.quantile(a, 0.9)
    if z < 0.9:
        q_pos = np.quantile(a[a > 0], (0.9 - z) / (1 - z))
        print(f"layer {l + 1}: {100 * z:.0f}% zeros; 0.9-quantile {q_all:.4f} = "
              f"{(0.9 - z) / (1 - z):.2f}-quantile of the positive outputs {q_pos:.4f}")
        assert abs(q_all - q_pos) < 0.02 * max(q_all, 1e-6) + 1e-6
print(f"z = 0.85: the 0.9-quantile is the {(0.9 - 0.85) / 0.15:.2f}-quantile of the active outputs")
solved(2, "the (p - z)/(1 - z)-quantile of the active outputs: for z = 0.85, the 1/3-quantile")

# %% [markdown]
# ## Exercise 3: p = 1 at small and large T
#
# The maximum is several times the p-quantile (step 4's histograms), so the steps V_th/T
# are several times coarser: at T = 8 many small values get no spike at all and the network
# loses accuracy. At T = 64 the steps are 8x finer and p = 1 clips nothing, so most of the
# gap closes (on the tiny network entirely; on the bundled one p = 1 is still behind at
# T = 64, its maximum being 2-4 times the 0.9995-quantile). Clipping is the one error no T
# removes, which is why a p below 1 wins at small T and p = 1 can win at very large T.

# %%
cfg = ConversionConfig(batch_size=100)
acc = {}
for p in (net.p, 1.0):
    balance_thresholds(snn, net.model, calib, p=p)
    for T in (8, 64):
        acc[p, T] = snn_accuracy(snn, x_test, y_test, T, cfg)[0]
        print(f"p = {p}: T = {T}: {acc[p, T]:.1f}%")
gap8, gap64 = acc[net.p, 8] - acc[1.0, 8], acc[net.p, 64] - acc[1.0, 64]
assert gap8 > 0 and gap64 < gap8
solved(3, f"p = 1 loses {gap8:.1f} points at T = 8, {gap64:.1f} at T = 64")
finish(run)
