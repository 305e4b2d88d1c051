# %% [markdown]
# # Solutions — Step 9

# %%
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.beyond.qcfs import QCFS, initial_lams, with_qcfs  # noqa: E402
from icsnn_np.beyond.quantised import quantised_ann  # noqa: E402
from icsnn_np.runs.checkpoints import load_model  # noqa: E402
from icsnn_np.runs.evaluate import (ConversionConfig, ann_accuracy, calibrate,  # noqa: E402
                                    convert_balanced, snn_correct)
from icsnn_np.runs.tables import mcnemar  # noqa: E402

run = setup("Solutions to step 9")
ds = load_slice()
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256), n_test=run.pick(200, 1000))

# %% [markdown]
# ## Exercise 1: λ's gradient
#
# y = λ clip(q, 0, 1) with q = floor(u L + 1/2)/L and u = x/λ. Straight through the floor,
# dq/dλ = du/dλ = -x/λ², so inside the clip dy/dλ = q + λ (-x/λ²) = q - u; above it y = λ
# and dy/dλ = 1; below it y = 0. At λ = 1, L = 4: x = 0.3 gives q = floor(1.7)/4 = 0.25 and
# 0.25 - 0.3 = -0.05; x = 2.0 is above (1); x = -1.0 below (0). Summed: 0.95.

# %%
m = QCFS(4, 1.0, dtype=np.float64)
m.forward(np.array([[0.3, 2.0, -1.0]]))
m.backward(np.ones((1, 3)))
print(f"QCFS.backward: dL/dλ = {m.grads['lam'][0]:.6f} (by hand: -0.05 + 1 + 0 = 0.95)")
assert abs(m.grads["lam"][0] - 0.95) < 1e-12
solved(1, "dλ = q - x/λ inside the clip, 1 above, 0 below: 0.95 on the three inputs")

# %% [markdown]
# ## Exercise 2: T = 2L is not L
#
# The T-level ANN at T rounds to multiples of λ/T. At T = 2L the levels are twice as fine:
# a value the QCFS ANN rounds to k λ/L may land on an odd multiple of λ/(2L) instead, so
# the finer network computes something the trained one never saw. Usually close, not equal.

# %%
if run.quick:
    L = 4
    qmodel = with_qcfs(copy.deepcopy(net.model), L, initial_lams(net.model, calib))
else:
    qmodel, header = load_model("vgg_cpu_qcfs")
    qmodel.to(run.xp)
    L = header["levels"]
qmodel.eval()
cfg = ConversionConfig(batch_size=100)
qsnn, _ = convert_balanced(qmodel, calib, cfg)
acc = {T: ann_accuracy(quantised_ann(qsnn, T), x_test, y_test) for T in (L, 2 * L)}
ann_q = ann_accuracy(qmodel, x_test, y_test)
print(f"QCFS ANN {ann_q:.2f}%; T-level ANN at T = L = {L}: {acc[L]:.2f}%, at T = 2L: {acc[2 * L]:.2f}%")
assert abs(acc[L] - ann_q) < 1e-9
solved(2, f"at T = L the T-level ANN is the QCFS ANN ({ann_q:.2f}%); at 2L it is "
          f"{acc[2 * L]:.2f}%, {acc[2 * L] - ann_q:+.2f} points")

# %% [markdown]
# ## Exercise 3: does Alg. 2 add anything on a QCFS ANN?
#
# C-SNN `half` starts every neuron at λ/2, the QCFS reading. IC-SNN with compensation
# `half` measures the remainder of v(T) after T steps from there and adds it: on a QCFS
# ANN the remainder is mostly near λ/2 again, so v(0) lands near λ and rounds everything
# up. McNemar's test counts only the images the two get differently.

# %%
T = L
got = {}
for v in ("c-snn", "ic-snn"):
    sim = calibrate(qsnn, v, T, calib, ConversionConfig(batch_size=100, comp="half"))
    got[v] = snn_correct(qsnn, x_test, y_test, T, cfg, run=sim)[0]
b, c, p = mcnemar(got["c-snn"], got["ic-snn"])
print(f"T = {T}: C-SNN half {100 * got['c-snn'].mean():.2f}%, IC-SNN (half) {100 * got['ic-snn'].mean():.2f}%; "
      f"{b} images only C-SNN gets, {c} only IC-SNN; McNemar p = {p:.2g}")
solved(3, f"IC-SNN {'adds' if c > b else 'does not add'} accuracy over λ/2 at T = L "
          f"({c} vs {b} images, p = {p:.2g})")
finish(run)
