"""Spike counts, exact fan-outs, synaptic operations and the energy estimate."""
import json

import numpy as np
import pytest

from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from icsnn_np.module import Sequential
from icsnn_np.models import resnet20
from icsnn_np.runs.stats import E_AC_PJ, E_MAC_PJ, fanout_maps, format_stats, stats_for_demo


def brute_conv_fanout(C, H, W, O, k, s, p):
    """Synapses of each input position of a conv, by looping over every output and tap."""
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    f = np.zeros((C, H, W))
    for i in range(Ho):
        for j in range(Wo):
            for a in range(k):
                for b in range(k):
                    r, c = i * s + a - p, j * s + b - p
                    if 0 <= r < H and 0 <= c < W:
                        f[:, r, c] += O
    return f


def test_hand_checked_network():
    """1x1 conv -> IF -> linear(9 -> 3) with currents 0, 1/4, 1/2, 1 x V_th: known spikes."""
    net = Sequential(Conv2d(1, 1, 1, dtype=np.float64), ReLU(), Flatten(), Linear(9, 3, dtype=np.float64))
    net.children["0"].params["weight"][...] = 1.0
    x = np.array([0, .25, .5, 1, 1, .5, .25, 0, .5], np.float64).reshape(1, 1, 3, 3)
    snn = convert(net)
    snn.nodes[0].v_th = 1.0
    T = 8
    # soft reset, fire when v > V_th: a constant current c fires ceil(c*T) - 1 times (c*T integer, c > 0)
    spikes = np.array([0, 1, 3, 7, 7, 3, 1, 0, 3])
    d = stats_for_demo(net, snn, x, T)
    inp, layer = d["layers"]
    assert layer["spikes"] == spikes.sum() == 25
    assert layer["sops"] == 3 * 25                 # every neuron drives the 3 outputs
    assert layer["fanout_mean"] == 3 and layer["ann_macs"] == 27 and layer["ann_adds"] == 0
    assert layer["firing_rate"] == 25 / (9 * 8)
    assert inp["snn_macs"] == 9 and inp["ann_macs"] == 9 and inp["sops"] == 0   # analog input: MACs once
    t = d["total"]
    assert t["sops"] == 75 and t["snn_macs"] == 9 and t["ann_macs"] == 36
    assert t["snn_energy_uj"] == pytest.approx((75 * E_AC_PJ + 9 * E_MAC_PJ) * 1e-6)
    assert t["ann_energy_uj"] == pytest.approx(36 * E_MAC_PJ * 1e-6)
    assert stats_for_demo(net, snn, x, T, input_per_step=True)["total"]["snn_macs"] == 9 * T
    json.dumps(d)
    text = format_stats(d)
    assert "features" not in text and "total" in text and "Horowitz" in text


def test_padded_conv_fanout_by_hand():
    """1 channel 3x3 image, 3x3 conv with padding 1, 2 output channels: corner pixels reach
    2*4 taps, edges 2*6, the centre 2*9; 98 synapses (MACs), not the nominal 2*9*9 = 162."""
    net = Sequential(Conv2d(1, 2, 3, 1, 1), ReLU(), Flatten(), Linear(18, 3))
    fin, fans, ident, nominal = fanout_maps(net, (1, 3, 3))
    np.testing.assert_array_equal(fin[0], [[8, 12, 8], [12, 18, 12], [8, 12, 8]])
    assert fin.sum() == 98 and nominal == [162, 54]
    np.testing.assert_array_equal(fans[0], np.full((2, 3, 3), 3.0))
    assert ident == [0]


def test_sops_equal_independent_count():
    """conv(s1,p1) -> IF -> 2x2 avg pool -> conv(s2,p1) -> IF -> linear: SOPs = sum of
    spike counts x loop-counted fan-outs; ANN MACs = exact connections of each layer."""
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(2, 3, 3, 1, 1, rng=rng), ReLU(), AvgPool2d(2),
                     Conv2d(3, 4, 3, 2, 1, rng=rng), ReLU(), Flatten(), Linear(4 * 3 * 3, 5, rng=rng))
    x = rng.normal(size=(6, 2, 11, 11)).astype(np.float32)   # odd size: the pool drops a row
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=0.9)
    T = 6
    d = stats_for_demo(net, snn, x, T, batch_size=4)
    from icsnn_np.simulate import simulate
    rec = simulate(snn, x, T, record=True).layers
    f_in = brute_conv_fanout(2, 11, 11, 3, 3, 1, 1)
    f2 = brute_conv_fanout(3, 5, 5, 4, 3, 2, 1)                 # on the pooled 5x5 map
    f1 = np.zeros((3, 11, 11))
    f1[:, :10, :10] = np.repeat(np.repeat(f2, 2, axis=1), 2, axis=2)   # row/col 10 dropped
    f3 = np.full((4, 3, 3), 5.0)
    for row, f, r in zip(d["layers"][1:], (f1, f3), rec):
        want = (r["spike_count"] * f).sum() / len(x)
        assert row["sops"] == pytest.approx(want, rel=1e-12)
        assert row["spikes"] == pytest.approx(r["spike_count"].sum() / len(x))
        assert row["fanout_mean"] == pytest.approx(f.mean())
    # ANN MACs: the conv after the pool works on the pooled map
    assert d["layers"][0]["ann_macs"] == f_in.sum()
    assert d["layers"][1]["ann_macs"] == f2.sum()
    assert d["layers"][2]["ann_macs"] == 4 * 9 * 5
    assert d["total"]["ann_macs_nominal"] == 3 * 121 * 18 + 4 * 9 * 27 + 36 * 5


def test_resnet_identity_shortcuts():
    """A spike entering an identity block drives conv1's taps plus one identity synapse;
    the projection block's 1x1 stride-2 conv reaches only even positions."""
    net = resnet20(widths=(4, 8), blocks=1, num_classes=3)
    fin, fans, ident, _ = fanout_maps(net, (3, 32, 32))
    relu_stem, b1r1, b1r2, b2r1, b2r2 = fans
    np.testing.assert_array_equal(relu_stem, brute_conv_fanout(4, 32, 32, 4, 3, 1, 1) + 1)
    np.testing.assert_array_equal(b1r1, brute_conv_fanout(4, 32, 32, 4, 3, 1, 1))
    proj = np.zeros((4, 32, 32))
    proj[:, ::2, ::2] = 8
    np.testing.assert_array_equal(b1r2, brute_conv_fanout(4, 32, 32, 8, 3, 2, 1) + proj)
    np.testing.assert_array_equal(b2r2, np.full((8, 16, 16), 3.0))   # avg pool 16 -> fc(3)
    assert ident == [4 * 32 * 32, 0, 0, 0, 0]
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    snn = convert(net)
    balance_thresholds(snn, net, [x])
    d = stats_for_demo(net, snn, x, 4)
    assert d["layers"][1]["ann_adds"] == 4 * 32 * 32
    assert d["total"]["ann_adds"] == 4 * 32 * 32
    assert [r["name"] for r in d["layers"]] == ["input", "relu", "layer1.0.relu1", "layer1.0.relu2",
                                                "layer2.0.relu1", "layer2.0.relu2"]


def test_rate_coding_counts_input_spikes():
    net = Sequential(Conv2d(3, 2, 3, 1, 1), ReLU(), Flatten(), Linear(2 * 4 * 4, 2))
    rng = np.random.default_rng(2)
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
    raw = rng.uniform(0, 1, (3, 3, 4, 4)).astype(np.float32)
    x = (raw - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    x = x.astype(np.float32)
    snn = convert(net)
    balance_thresholds(snn, net, [x])
    T, seed = 5, 11
    d = stats_for_demo(net, snn, x, T, coding="rate", mean=mean, std=std, seed=seed)
    fin = brute_conv_fanout(3, 4, 4, 2, 3, 1, 1)
    p = np.clip(x * np.reshape(std, (1, 3, 1, 1)).astype(np.float32)
                + np.reshape(mean, (1, 3, 1, 1)).astype(np.float32), 0, 1)
    s = sum((np.random.default_rng([seed, t]).random(x.shape, dtype=np.float32) < p) for t in range(T))
    row = d["layers"][0]
    assert row["spikes"] == s.sum() / 3 and row["sops"] == (s * fin).sum() / 3
    assert row["snn_macs"] == 0 and d["total"]["snn_macs"] == 0
    json.dumps(d)
    with pytest.raises(ValueError, match="mean and std"):
        stats_for_demo(net, snn, x, T, coding="rate")


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_spike_stats_on_backend_agree_with_numpy(xp, coding):
    """spike_stats with the network and the images on the device: NumPy's numbers."""
    from icsnn_np.backend import to_device
    rng = np.random.default_rng(0)
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
    x = ((rng.uniform(0, 1, (5, 3, 6, 6)) - np.reshape(mean, (1, 3, 1, 1)))
         / np.reshape(std, (1, 3, 1, 1)))

    def run(xp_):
        net = Sequential(Conv2d(3, 4, 3, 1, 1, rng=np.random.default_rng(1), dtype=np.float64),
                         ReLU(), AvgPool2d(2), Flatten(),
                         Linear(36, 3, rng=np.random.default_rng(2), dtype=np.float64)).to(xp_)
        snn = convert(net)
        xd = to_device(x, xp_)
        balance_thresholds(snn, net, [xd], p=0.9)
        return stats_for_demo(net, snn, xd, 5, coding=coding, mean=mean, std=std, seed=3,
                              batch_size=2)

    got, want = run(xp), run(np)
    assert json.dumps(got) == json.dumps(want)
