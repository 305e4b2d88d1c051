# %% [markdown]
# # Solutions — Appendix A1

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, get_model, load_slice, setup, solved, split_data  # noqa: E402
from icsnn_np.convert import balance_thresholds, convert  # noqa: E402
from icsnn_np.fast import winograd  # noqa: E402
from icsnn_np.layers import Conv2d, conv_out_size  # noqa: E402
from icsnn_np.runs.engine import simulator  # noqa: E402
from icsnn_np.simulate import simulate  # noqa: E402

run = setup("Solutions to appendix A1")

# %% [markdown]
# ## Exercise 1: output size
#
# floor((H + 2p - k) / s) + 1 = floor((32 + 0 - 3) / 2) + 1 = 14 + 1 = 15.

# %%
y = Conv2d(3, 4, 3, stride=2, padding=0).eval().forward(np.zeros((1, 3, 32, 32), np.float32))
assert conv_out_size(32, 3, 2, 0) == 15 and y.shape == (1, 4, 15, 15)
solved(1, "15 x 15")

# %% [markdown]
# ## Exercise 2: multiplies per 4 x 4 tile
#
# Direct: 16 outputs x 9 taps = 144. Winograd: the 6 x 6 transformed input tile (B^T d B)
# times the 6 x 6 transformed kernel (G g G^T), elementwise: 36, a 4x saving. The 6 is the
# number of rows of B^T and G (4 outputs + 3 taps - 1).

# %%
assert winograd.B_T.shape == (6, 6) and winograd.G.shape == (6, 3) and winograd.A_T.shape == (4, 6)
assert winograd.K_G.shape == (36, 9)                 # the 2-D kernel transform: 9 taps -> 36
assert 16 * 9 == 144 and winograd.B_T.shape[0] ** 2 == 36
solved(2, "144 multiplies direct, 36 with Winograd F(4x4, 3x3)")

# %% [markdown]
# ## Exercise 3: the engines at T = 64
#
# They compute the same sums in a different order (Winograd transforms, blocked GEMMs), so
# each potential differs by float32 rounding, ~1e-4. A spike differs only if a potential
# lands within that distance of its threshold at some step: rare, but over 64 steps and
# many neurons it happens (the README's benchmark counts such near-ties). Where it happens,
# one engine sent one more spike, so its v(T) is lower by one V_th, and the neurons that
# spike receives in the next layer move a little too.

# %%
ds = load_slice()
net = get_model(run, ds)
calib, x_test, _ = split_data(run, ds, net, n_calib=64, n_test=10)
snn = convert(net.model)
balance_thresholds(snn, net.model, calib, p=net.p)
a = simulate(snn, x_test, 64, record=True)
b = simulator("fast")(snn, x_test, 64, record=True)
same = np.mean([(la["spike_count"] == lb["spike_count"]).mean() for la, lb in zip(a.layers, b.layers)])
diff = [la["spike_count"] != lb["spike_count"] for la, lb in zip(a.layers, b.layers)]
n_diff = sum(int(d.sum()) for d in diff)
# v(T) where the counts agree: rounding, plus what a differing spike upstream delivered
dv = max(np.abs(la["v_T"] - lb["v_T"])[~d].max() for la, lb, d in zip(a.layers, b.layers, diff))
print(f"T = 64: {100 * same:.4f}% identical spike counts ({n_diff} neurons differ); "
      f"max |v(T) difference| where the counts agree {dv:.1e}")
assert same > 0.999
for la, lb, d in zip(a.layers, b.layers, diff):     # one spike more <=> v(T) lower by V_th
    dn = (lb["spike_count"] - la["spike_count"])[d]
    assert np.all(np.abs(dn) <= 2)
solved(3, f"{100 * same:.4f}% identical spike counts at T = 64 ({n_diff} neurons differ: "
          f"float32 near-ties)")
finish(run)
