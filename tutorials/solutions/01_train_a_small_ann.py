# %% [markdown]
# # Solutions — Step 1

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tutorials/, for _common

import numpy as np  # noqa: E402

from _common import finish, load_slice, setup, solved  # noqa: E402
from icsnn_np.layers import AvgPool2d  # noqa: E402
from icsnn_np.models import build_model  # noqa: E402
from icsnn_np.io.preprocess import channel_stats, normalize  # noqa: E402

run = setup("Solutions to step 1")

# %% [markdown]
# ## Exercise 1: counting parameters
#
# conv 3->32: 9*3*32 + 32 = 896; 32->32: 9,248; 32->64: 18,496; 64->64: 36,928;
# 64->128: 73,856; 128->128: 147,584; the classifier sees 128 channels x 4 x 4 = 2,048
# values: 2,048*10 + 10 = 20,490. Total 307,498. Pooling layers have no parameters.

# %%
convs = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
by_hand = sum(9 * c * o + o for c, o in convs) + 2048 * 10 + 10
assert by_hand == build_model("vgg_cpu").num_parameters() == 307_498
solved(1, f"{by_hand:,} parameters")

# %% [markdown]
# ## Exercise 2: max pooling of spike trains
#
# Neuron A spikes at odd steps, B at even steps. Max pooling sees a spike at every step:
# rate 1, though max(0.5, 0.5) = 0.5. Average pooling gives 0.5 at every step, and its time
# average is 0.5 = mean(0.5, 0.5). Averaging over time and over space commute (both are
# linear); max and time-averaging do not. So an SNN reproduces an ANN's average pooling
# exactly and its max pooling only approximately (conversion papers need extra machinery
# for max pooling; the paper avoids it).

# %%
T = 8
a = (np.arange(T) % 2 == 0).astype(np.float64)    # 1 0 1 0 ...
b = 1.0 - a                                         # 0 1 0 1 ...
window = np.stack([np.stack([a, b], -1)] * 2, -2)[:, None, None]   # (T, 1, 1, 2, 2): a b / a b
rate_max_of_spikes = window.max(axis=(-2, -1)).mean()               # max pool, then time average
rate_avg_of_spikes = AvgPool2d(2).forward(window[:, 0]).mean()      # average pool, then time average
assert rate_max_of_spikes == 1.0 and max(a.mean(), b.mean()) == 0.5
assert rate_avg_of_spikes == 0.5 == np.mean([a.mean(), b.mean()])
solved(2, "max pooling of spikes: rate 1 (not 0.5); average pooling: 0.5, as the ANN")

# %% [markdown]
# ## Exercise 3: normalised images
#
# normalize computes (x/255 - mean)/std with the per-channel mean and std of the training
# images, so over those images each channel has mean 0 and standard deviation 1 (up to
# float32 rounding). Test images come out close to, not exactly at, 0 and 1.

# %%
ds = load_slice()
mean, std = channel_stats(ds.x_train)
xn = normalize(ds.x_train, mean, std)
m, s = xn.mean(axis=(0, 2, 3)), xn.std(axis=(0, 2, 3))
print("per-channel mean", np.round(m, 6), "std", np.round(s, 6))
assert np.allclose(m, 0, atol=1e-4) and np.allclose(s, 1, atol=1e-4)
solved(3, "mean 0 and standard deviation 1 per channel on the training images")
finish(run)
