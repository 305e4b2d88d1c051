"""FastIFNode (fast/neurons.py): the IF update over a chunk of time steps, tiled, over
threads, equals the teaching IFNode run one step per call: the same spikes, v(T), counts
and first-spike steps for any split of T into chunks, any tile size and thread split, for
per-step and constant currents, in either memory order."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import F64, channels_last
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import float_arrays, small_v0, thresholds

from icsnn_np.fast import neurons as fast_neurons
from icsnn_np.fast import threads
from icsnn_np.fast.layers import twin
from icsnn_np.fast.neurons import FastIFNode
from icsnn_np.fast.nhwc import is_channels_last
from icsnn_np.neurons import IFNode

def teaching(current, T, n, v_th, v0):
    """The teaching node, one call per step: (node, spikes*V_th (T, n, ...)). ``current``
    (T*n, ...) time-major, or (n, ...) the same at every step."""
    node = IFNode(v_th=v_th, v0=v0)
    node.reset(n, record=True)
    const = current.shape[0] == n and T > 1
    out = np.stack([np.array(node.forward(current if const else current[t * n:(t + 1) * n]))
                    for t in range(T)])
    return node, out


def chunked(current, T, n, v_th, v0, cuts=(), constant=False):
    """A FastIFNode over the chunks between ``cuts``: (node, spikes*V_th (T, n, ...))."""
    node = FastIFNode(v_th=v_th, v0=v0)
    node.reset(n, record=True)
    outs = []
    for a, b in zip((0,) + tuple(cuts), tuple(cuts) + (T,)):
        node.begin_chunk(b - a)
        c = current if constant else current[a * n:b * n]
        outs.append(np.array(node.forward(c)))
    return node, np.concatenate(outs).reshape((T, n) + current.shape[1:])


def assert_same(fast, out_fast, ref, out_ref):
    np.testing.assert_array_equal(out_fast, out_ref)
    np.testing.assert_array_equal(fast.v, ref.v)                      # same float ops, same order
    np.testing.assert_array_equal(fast.spike_count, ref.spike_count)
    np.testing.assert_array_equal(fast.first_spike, ref.first_spike)
    assert fast.t == ref.t


@settings(max_examples=40)
@given(T=st.integers(1, 24), data=st.data(), v_th=thresholds, v0=small_v0)
def test_any_split_into_chunks_equals_the_step_by_step_node(T, data, v_th, v0):
    """State carries over between chunks: any split of T steps gives identical spikes, v(T),
    counts and first-spike steps (1-based, counted across chunks)."""
    n = 2
    cur = data.draw(float_arrays((T * n, 5), -2.0, 3.0))
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=4))) if T > 1 else []
    ref, out_ref = teaching(cur, T, n, v_th, v0)
    node, out = chunked(cur, T, n, v_th, v0, cuts)
    assert_same(node, out, ref, out_ref)


@settings(max_examples=30)
@given(T=st.integers(2, 30), data=st.data(), v_th=thresholds, v0=small_v0, chunk=st.integers(2, 8))
def test_constant_current_equals_the_repeated_current(T, data, v_th, v0, chunk):
    """An (N, ...) current with a chunk of several steps is the same current at every step
    (direct coding into the first layer)."""
    cur = data.draw(float_arrays((2, 3), -3.0, 3.0))
    cuts = list(range(chunk, T, chunk))
    ref, out_ref = teaching(cur, T, 2, v_th, v0)
    node, out = chunked(cur, T, 2, v_th, v0, cuts, constant=True)
    assert_same(node, out, ref, out_ref)


@pytest.mark.parametrize("v_kind", ["scalar", "channel", "neuron"])
def test_tiles_and_threads_do_not_change_spikes(monkeypatch, v_kind):
    """The CPU loop's sample tiles and thread slices are an exact split (neurons independent)."""
    rng = np.random.default_rng(0)
    T, n = 6, 5
    cur = rng.normal(0.4, 1.0, (T * n, 3, 4, 4))
    v0 = {"scalar": 0.2, "channel": rng.normal(0, 0.5, (3, 1, 1)),
          "neuron": rng.normal(0, 0.5, (3, 4, 4))}[v_kind]
    v_th = {"scalar": 0.7, "channel": np.array([0.5, 0.7, 1.1]).reshape(3, 1, 1),
            "neuron": rng.uniform(0.3, 1.0, (3, 4, 4))}[v_kind]
    ref, out_ref = teaching(cur, T, n, v_th, v0)
    calls = []
    real = threads.parallel_for
    monkeypatch.setattr(fast_neurons, "IF_TILE_ELEMENTS", 1)        # one sample per tile
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(fast_neurons, "parallel_for",
                        lambda fn, N, el, blas=False: calls.append(N) or real(fn, N, el, blas))
    node, out = chunked(cur, T, n, v_th, v0, cuts=(4,))
    assert calls == [n, n]                                           # the samples were split
    assert_same(node, out, ref, out_ref)


def test_channels_last_current_keeps_its_memory_order():
    """After a fast conv the current is stored (N, H, W, C): v, the records and the spikes
    keep that order (no transposing copies), and the values are the teaching node's."""
    rng = np.random.default_rng(1)
    T, n = 4, 3
    cur = channels_last(rng.normal(0.5, 1.0, (T * n, 4, 3, 5)))
    ref, out_ref = teaching(cur, T, n, 0.8, 0.1)
    node = FastIFNode(v_th=0.8, v0=0.1)
    node.reset(n, record=True)
    node.begin_chunk(T)
    out = node.forward(cur)
    assert is_channels_last(out) and is_channels_last(node.v) and is_channels_last(node.first_spike)
    assert_same(node, np.array(out).reshape(out_ref.shape), ref, out_ref)


def test_forward_writes_into_a_reusable_output():
    rng = np.random.default_rng(2)
    n = 2
    node = FastIFNode(v_th=1.0)
    node.reset(n)
    node.begin_chunk(3)
    first = node.forward(rng.normal(0.5, 1, (3 * n, 4)))
    node.begin_chunk(2)                                    # a shorter last chunk
    second = node.forward(rng.normal(0.5, 1, (2 * n, 4)), out=first)
    assert second.shape == (2 * n, 4) and np.shares_memory(second, first)


def test_spikes_written_over_the_current_equal_those_into_a_new_buffer():
    """The engine lets a node overwrite its current with its spikes (``out=current``): the
    same spikes, v and counts as into a fresh buffer, over chunks, in either memory order."""
    rng = np.random.default_rng(3)
    T, n = 5, 3
    for cur in (rng.normal(0.5, 1.0, (T * n, 4, 3, 3)),
                channels_last(rng.normal(0.5, 1.0, (T * n, 4, 3, 3)))):
        ref, out_ref = teaching(cur, T, n, 0.8, 0.1)
        node = FastIFNode(v_th=0.8, v0=0.1)
        node.reset(n, record=True)
        outs = []
        for a, b in ((0, 2), (2, 5)):
            node.begin_chunk(b - a)
            c = np.array(cur[a * n:b * n], order="K")              # the layer's own buffer
            o = node.forward(c, out=c)
            assert np.shares_memory(o, c)
            outs.append(np.array(o))
        assert_same(node, np.concatenate(outs).reshape(out_ref.shape), ref, out_ref)


def test_twin_of_a_converted_node_runs_its_thresholds_and_v0():
    node = IFNode(v_th=np.array([0.5, 1.0]), v0=np.array([0.4, -0.2]), name="relu1")
    fast = twin(node)
    assert isinstance(fast, FastIFNode) and fast.name == "relu1"
    cur = np.tile([[0.3, 0.6]], (5 * 2, 1))
    ref, out_ref = teaching(cur, 5, 2, node.v_th, node.v0)
    fast.reset(2, record=True)
    fast.begin_chunk(5)
    out = fast.forward(cur)
    assert_same(fast, np.array(out).reshape(out_ref.shape), ref, out_ref)


def test_wrong_number_of_current_rows_is_a_clear_error():
    node = FastIFNode(name="relu7")
    node.reset(2)
    node.begin_chunk(3)
    with pytest.raises(ValueError, match=r"relu7: expected a current with 2 or 3\*2 rows"):
        node.forward(np.zeros((5, 4)))


def test_bad_threshold_is_refused_by_the_fast_node_too():
    node = FastIFNode(v_th=0.0, name="relu2")
    node.reset(1)
    node.begin_chunk(4)
    with pytest.raises(ValueError, match="relu2: threshold V_th has a value <= 0"):
        node.forward(np.zeros((4, 3), F64))


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("constant", [False, True])
def test_chunks_on_backend_agree_with_numpy(xp, constant):
    """The chunked node on the device (channel thresholds and neuron v(0) as device arrays,
    a channels-last current): the teaching node's spikes, v(T), counts, first spikes."""
    from icsnn_np.backend import to_device, to_host
    rng = np.random.default_rng(5)
    T, n = 7, 2
    current = channels_last(rng.normal(0.3, 0.7, ((1 if constant else T) * n, 3, 2, 2)))
    v_th = rng.uniform(0.5, 1.2, (3, 1, 1))
    v0 = rng.uniform(-0.4, 0.4, (3, 2, 2))
    want, want_out = teaching(current, T, n, v_th, v0)
    node = FastIFNode(v_th=to_device(v_th, xp), v0=to_device(v0, xp))
    node.reset(n, record=True)
    outs = []
    for a, b in ((0, 3), (3, 4), (4, 7)):
        node.begin_chunk(b - a)
        c = current if constant else current[a * n:b * n]
        outs.append(to_host(node.forward(to_device(np.ascontiguousarray(c), xp))).reshape((b - a, n) + c.shape[1:]))
    np.testing.assert_array_equal(np.concatenate(outs), want_out)
    for name in ("v", "spike_count", "first_spike"):
        np.testing.assert_allclose(to_host(getattr(node, name)), getattr(want, name), rtol=1e-12,
                                   atol=1e-12, err_msg=name)


def test_tiles_follow_the_l2_cache_of_the_machine(monkeypatch):
    """The IF tile fills the L2 (1 MB where unknown), the pooling tile an eighth of it; a
    number in IF_TILE_ELEMENTS / POOL_TILE_ELEMENTS overrides the machine."""
    from icsnn_np.fast import cache
    from icsnn_np.fast import layers as fast_layers
    a = np.zeros((64, 8, 16, 16), np.float32)                       # 2,048 elements an image
    seen = {}
    for l2 in (1 << 21, 1 << 18, None):
        monkeypatch.setattr(cache, "cache_sizes", lambda l2=l2: {"L1d": None, "L2": l2, "L3": None})
        seen[l2] = (fast_neurons.tile_elements(4), fast_layers.pool_tile(a))
    assert seen[1 << 21] == (1 << 19, 32) and seen[1 << 18] == (1 << 16, 4)
    assert seen[None] == (1 << 18, 16)
    monkeypatch.setattr(fast_neurons, "IF_TILE_ELEMENTS", 5)
    monkeypatch.setattr(fast_layers, "POOL_TILE_ELEMENTS", 4096)
    assert fast_neurons.tile_elements(4) == 5 and fast_layers.pool_tile(a) == 2
