"""The fused Winograd conv + IF node (fast/fused.py): the spikes of the unfused engine, bit
for bit, and never a block of a single tile."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import random_biases

from icsnn_np.beyond.thresholds import channel_threshold
from icsnn_np.convert import balance_thresholds, convert, layer_threshold
from icsnn_np.fast import engine as fast_engine
from icsnn_np.fast import fused, threads, winograd
from icsnn_np.fast.engine import simulate_fast
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from icsnn_np.module import Sequential


@pytest.fixture
def two_workers(monkeypatch):
    """Every parallel section split over two workers, however small."""
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS", 0)


def net(dtype, seed=0):
    """Two 16+-channel 3x3 convs (Winograd) each followed by a ReLU, a pool between."""
    rng = np.random.default_rng(seed)
    return random_biases(Sequential(Conv2d(3, 16, 3, 1, 1, rng=rng, dtype=dtype), ReLU(),
                      Conv2d(16, 16, 3, 1, 1, rng=rng, dtype=dtype), ReLU(), AvgPool2d(2),
                      Conv2d(16, 24, 3, 1, 1, rng=rng, dtype=dtype), ReLU(),
                      Flatten(), Linear(24 * 16, 5, rng=rng, dtype=dtype)), rng)


def snn_and_images(dtype, n, rule=layer_threshold):
    model = net(dtype)
    x = np.random.default_rng(1).normal(size=(n, 3, 8, 8)).astype(dtype)
    snn = convert(model)
    balance_thresholds(snn, model, [x], p=0.95, rule=rule)
    snn.set_v0([0.3 * n.v_th for n in snn.nodes])
    return snn, x


def spy(monkeypatch):
    calls = []
    real = fused.conv_if
    monkeypatch.setattr(fast_engine, "conv_if",
                        lambda *a, **k: calls.append((a[2].shape, a[3])) or real(*a, **k))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [1, 3, 4])
@pytest.mark.parametrize("rule", [layer_threshold, channel_threshold])
def test_fused_conv_and_if_give_the_unfused_spikes_bit_for_bit(monkeypatch, two_workers, dtype, chunk, rule):
    # blocks of 2 images of 8x8 (4 tiles), 8 of 4x4 (1 tile): with N = 8 both convs fuse
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 2 * 36 * 4 * 16 * np.dtype(dtype).itemsize)
    snn, x = snn_and_images(dtype, 8, rule)
    calls = spy(monkeypatch)
    kw = dict(count=True, record=True, keep_v=True, chunk=chunk)
    a = simulate_fast(snn, x, 7, fuse=True, **kw)
    assert {s[2] for s, _ in calls} == {8, 4}
    b = simulate_fast(snn, x, 7, fuse=False, **kw)
    np.testing.assert_array_equal(a.output, b.output)
    assert a.spikes == b.spikes
    for la, lb in zip(a.layers, b.layers):
        for k in ("v_T", "spike_count", "first_spike"):
            np.testing.assert_array_equal(la[k], lb[k], err_msg=k)
    assert a.output.dtype == dtype


def test_blocks_of_the_convs_size_a_shorter_last_one_never_a_lone_tile(monkeypatch, two_workers):
    """The 8x8 conv's blocks hold 4 images (4 tiles each), the 4x4 conv's 16 (1 tile each):
    with N = 16 and N = 6 (last blocks of 2 and 6 images) both fuse; with N = 17 the 4x4
    conv's last block would be one tile, so it runs apart. The same bits as unfused."""
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 4 * 36 * 4 * 16 * 4)
    for n, sizes in ((16, {8, 4}), (6, {8, 4}), (17, {8})):
        snn, x = snn_and_images(np.float32, n)
        calls = spy(monkeypatch)
        a = simulate_fast(snn, x, 5, count=True, record=True, keep_v=True)
        assert {s[2] for s, _ in calls} == sizes
        b = simulate_fast(snn, x, 5, count=True, record=True, keep_v=True, fuse=False)
        np.testing.assert_array_equal(a.output, b.output)
        for la, lb in zip(a.layers, b.layers):
            for k in ("v_T", "spike_count", "first_spike"):
                np.testing.assert_array_equal(la[k], lb[k], err_msg=k)
