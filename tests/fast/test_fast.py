"""Two paths, one truth: the fast engine equals the teaching path.

On random VGG-style and residual networks (every conv kind the fast engine has: the
few-channel im2col, channels-last im2col for strided convs, Winograd for 3x3 'same' convs
with >= 16 input channels, 1x1 projections), in float64:

* the fast simulation gives the step-by-step reference's spike counts, first-spike times
  and v(T) for any chunk length, coding and v(0) - exactly for the spikes;
* the fast layers give the teaching layers' forward outputs and every gradient.

The IF node's cache tiles and the thread split are forced small, so a tile or slice
boundary falls inside every batch.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icsnn_np.convert import layer_threshold
from icsnn_np.beyond.thresholds import channel_threshold
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.fast import neurons as fast_neurons
from icsnn_np.fast import threads as fast_threads
from icsnn_np.fast.blas import thread_count
from icsnn_np.fast.conv import FastConv2d
from icsnn_np.fast.engine import simulate_fast
from icsnn_np.fast.layers import accelerate
from icsnn_np.io.preprocess import batched
from icsnn_np.simulate import simulate
from helpers import MEAN, STD, block_first_net, images, tiny_resnet, tiny_vgg, run_sim

# Every conv kind of the fast engine: the few-channel im2col (the 3-channel stem), Winograd
# (3x3 'same' with >= 16 input channels), the channels-last im2col (strided, 1x1 projection).
NETS = {
    "vgg": lambda seed: tiny_vgg(seed, widths=(16, 24), hw=8),               # spiking fc too
    "residual": lambda seed: tiny_resnet(seed, widths=(16, 20), hw=8, pool=4),
    "block_first": block_first_net,      # no layer before the first block: no constant current
}
SIZES = {"vgg": 8, "residual": 8, "block_first": 4}


@pytest.fixture
def small_tiles(monkeypatch):
    """Cache tiles of 2-3 samples and thread splits from the smallest work, so tile and
    slice boundaries fall inside every test batch."""
    monkeypatch.setattr(fast_neurons, "IF_TILE_ELEMENTS", 3000)
    monkeypatch.setattr(fast_threads, "MIN_PARALLEL_ELEMENTS", 0)


def converted(name, seed, n=5, channelwise=False):
    net, hw = NETS[name](seed), SIZES[name]
    snn = convert(net)
    balance_thresholds(snn, net, batched(images(6, hw, seed + 2), 3), p=0.95, rule=channel_threshold if channelwise else layer_threshold)
    return net, snn, images(n, hw, seed + 1)


def random_v0(snn, rng, scale):
    """Per node a random scalar v(0) in [-scale, scale] * V_th (negative, above threshold)."""
    snn.set_v0([float(rng.uniform(-scale, scale)) * float(np.max(n.v_th)) for n in snn.nodes])


# --------------------------------------------------------------------------- simulation
@pytest.mark.usefixtures("small_tiles")
@settings(max_examples=12)
@given(name=st.sampled_from(sorted(NETS)), seed=st.integers(0, 10**6), T=st.integers(1, 11),
       chunk=st.integers(1, 6), coding=st.sampled_from(["direct", "rate"]),
       v0_scale=st.sampled_from([0.0, 0.5, 1.5]), channelwise=st.booleans())
def test_fast_engine_gives_the_reference_spikes(name, seed, T, chunk, coding, v0_scale, channelwise):
    _, snn, x = converted(name, seed, channelwise=channelwise)
    random_v0(snn, np.random.default_rng(seed), v0_scale)
    kw = dict(coding=coding, record=True, mean=MEAN, std=STD, seed=seed)
    ref = run_sim(snn, x, T, **kw)
    fast = run_sim(snn, x, T, engine="fast", chunk=chunk, **kw)
    assert sum(int(r["spike_count"].sum()) for r in ref.layers) > 0       # the net does spike
    for r, f in zip(ref.layers, fast.layers):
        np.testing.assert_array_equal(f["spike_count"], r["spike_count"])
        np.testing.assert_array_equal(f["first_spike"], r["first_spike"])
        np.testing.assert_allclose(f["v_T"], r["v_T"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(fast.output, ref.output, rtol=0, atol=1e-11)


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("algo", ["auto", "im2col"])
def test_both_conv_algorithms_and_the_count_only_run_agree(name, algo, small_tiles):
    _, snn, x = converted(name, 3, n=7)
    ref = simulate(snn, x, 9, count=True)
    fast = simulate_fast(snn, x, 9, count=True, chunk=4, algo=algo)
    assert fast.spikes == ref.spikes and fast.neurons == ref.neurons
    np.testing.assert_array_equal(fast.output.argmax(1), ref.output.argmax(1))


def test_the_fast_network_really_uses_every_conv_path():
    """The equality above covers Winograd, channels-last im2col and few-channel im2col."""
    snn = convert(NETS["residual"](0))
    convs = [m for _, m in accelerate(snn.tree).named_modules() if isinstance(m, FastConv2d)]
    paths = {("winograd" if c.uses_winograd() else "few" if c._few() else "nhwc") for c in convs}
    assert paths == {"winograd", "few", "nhwc"}


def test_if_nodes_overwrite_a_layers_output_but_never_the_constant_current(monkeypatch):
    """In the engine a node after a conv writes its spikes over the conv's output buffer; the
    first node's constant current (direct coding), used again at every chunk, is never
    overwritten; and the spikes stay the reference's over several chunks."""
    from icsnn_np.fast.neurons import FastIFNode
    _, snn, x = converted("vgg", 4)
    seen, real = [], FastIFNode.forward

    def spy(self, current, out=None):
        seen.append(out is current)
        return real(self, current, out=out)

    monkeypatch.setattr(FastIFNode, "forward", spy)
    fast = simulate_fast(snn, x, 7, count=True, chunk=3)
    monkeypatch.setattr(FastIFNode, "forward", real)
    per_chunk = len(snn.nodes)
    assert len(seen) == 3 * per_chunk
    assert not any(seen[::per_chunk])                  # the first node: the constant current
    assert sum(seen) == 3 * sum(type(m).__name__ == "Conv2d" for m in snn.flat[snn.first:])
    ref = simulate(snn, x, 7, count=True)
    assert fast.spikes == ref.spikes and np.array_equal(fast.output.argmax(1), ref.output.argmax(1))


def test_the_fast_engine_leaves_the_reference_nodes_and_blas_alone():
    _, snn, x = converted("vgg", 1)
    before = thread_count()
    run_sim(snn, x, 5, engine="fast")
    assert thread_count() == before
    assert all(n.v is None for n in snn.nodes)       # the twins held the state, not the originals


# --------------------------------------------------------------------------- training
def _grads(net, x, R, input_grad=True):
    net.train()
    net.zero_grad()
    out = net.forward(x)
    dx = net.backward(R, input_grad=input_grad)
    return out, dx, {n: np.array(m.grads[k]) for n, m, k in net.named_parameters()}


@pytest.mark.usefixtures("small_tiles")
@settings(max_examples=8)
@given(name=st.sampled_from(sorted(NETS)), seed=st.integers(0, 10**6), n=st.integers(1, 6),
       input_grad=st.booleans())
def test_fast_layers_give_the_reference_outputs_and_gradients(name, seed, n, input_grad):
    model = NETS[name](seed)
    x = images(n, SIZES[name], seed)
    R = np.random.default_rng(seed).normal(size=(n, 3))
    out, dx, grads = _grads(model, x, R, input_grad)
    fout, fdx, fgrads = _grads(accelerate(model), x, R, input_grad)
    np.testing.assert_allclose(fout, out, rtol=1e-10, atol=1e-12)
    for k in grads:
        scale = max(1e-12, np.abs(grads[k]).max())
        np.testing.assert_allclose(fgrads[k] / scale, grads[k] / scale, rtol=0, atol=1e-10, err_msg=k)
    if input_grad or dx is not None:          # a first block always returns dL/dx
        np.testing.assert_allclose(fdx, dx, rtol=1e-10, atol=1e-12)
    else:                                    # a first conv skips it in both paths
        assert fdx is None


def test_fast_twins_share_the_parameters():
    """Training a twin trains the original: same arrays, not copies."""
    model = NETS["residual"](0)
    fast = accelerate(model)
    for (n1, m1, k1), (n2, m2, k2) in zip(model.named_parameters(), fast.named_parameters()):
        assert n1 == n2 and m1.params[k1] is m2.params[k2] and m1.grads[k1] is m2.grads[k2]
