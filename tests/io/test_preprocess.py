"""preprocess.py: per-channel statistics and normalisation, random crop + flip augmentation
(against an enumeration of every possible output), index batches and ``batched``."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from icsnn_np.backend import to_host
from icsnn_np.io.preprocess import augment, batched, batches, channel_stats, normalize


def test_channel_stats_and_normalize():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    x[:, 1] //= 4  # channels with different statistics
    mean, std = channel_stats(x, chunk=7)
    f = x / 255.0
    np.testing.assert_allclose(mean, f.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, f.std(axis=(0, 2, 3)), rtol=1e-5)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (3,)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)


def _all_crops(img: np.ndarray, pad: int) -> list[np.ndarray]:
    """Every output augment may produce for one image (C, H, W): reference by enumeration."""
    c, h, w = img.shape
    p = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    crops = [p[:, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [cr[:, :, ::-1] for cr in crops]


def test_augment_is_a_random_crop_and_flip():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3, 6, 5)).astype(np.float32) + 5  # no zeros, no symmetry
    out = augment(x, np.random.default_rng(7), pad=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for img, o in zip(x, out):
        hits = [i for i, cr in enumerate(_all_crops(img, 2)) if np.array_equal(cr, o)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 20  # many different offsets and both flips occur
    np.testing.assert_array_equal(out, augment(x, np.random.default_rng(7), pad=2))
    assert not np.array_equal(out, augment(x, np.random.default_rng(8), pad=2))


def test_augment_pad0_is_identity_or_flip_and_keeps_uint8():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    x = np.repeat(x, 16, axis=0)  # 32 images: both outcomes appear with near certainty
    out = augment(x, np.random.default_rng(0), pad=0)
    assert out.dtype == np.uint8
    flipped = [np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x)]
    same = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)
    # a hand case: pad 1, the zero border appears where the crop leaves the image
    one = np.array([[[1, 2], [3, 4]]], dtype=np.float32)[None]  # (1, 1, 2, 2)
    outs = {tuple(augment(one, np.random.default_rng(s), pad=1).ravel()) for s in range(200)}
    assert (1, 2, 3, 4) in outs and (2, 1, 4, 3) in outs and (0, 0, 0, 1) in outs
    assert (0, 0, 1, 0) in outs  # top-left crop, flipped
    assert len(outs) == 18


def test_augment_has_no_python_loop_over_the_batch():
    src = inspect.getsource(augment)
    body = src[src.index('"""', src.index('"""') + 3):]  # code after the docstring
    assert "for " not in body and "while " not in body


def test_augment_and_normalize_on_backend_agree_with_numpy(xp):
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    a = augment(x, np.random.default_rng(3))
    b = to_host(augment(xp.asarray(x), np.random.default_rng(3)))
    np.testing.assert_array_equal(a, b)
    mean, std = channel_stats(x)
    np.testing.assert_allclose(normalize(x, mean, std), to_host(normalize(x, mean, std, xp)),
                               rtol=1e-6, atol=1e-6)
    xf = normalize(x, mean, std, xp)                  # a float batch on the device is checked
    np.testing.assert_array_equal(to_host(normalize(xp.asarray(x), mean, std, xp)), to_host(xf))


def test_batches():
    idx = list(batches(10, 4))
    assert [len(b) for b in idx] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(idx), np.arange(10))
    shuffled = np.concatenate(list(batches(100, 32, np.random.default_rng(0))))
    assert sorted(shuffled.tolist()) == list(range(100))
    assert not np.array_equal(shuffled, np.arange(100))
    again = np.concatenate(list(batches(100, 32, np.random.default_rng(0))))
    np.testing.assert_array_equal(shuffled, again)
    assert list(batches(0, 4)) == []
    with pytest.raises(ValueError):
        list(batches(10, 0))


def test_batched_slices_consecutive_rows():
    x = np.arange(14).reshape(7, 2)
    parts = batched(x, 3)
    assert isinstance(parts, list) and [len(b) for b in parts] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(parts), x)
    assert all(np.shares_memory(b, x) for b in parts)          # views, no copies
    assert [len(b) for b in batched(x, 7)] == [7] and [len(b) for b in batched(x, 100)] == [7]
    assert batched(x[:0], 4) == []
    again = batched(x, 3)                                      # a list: iterable more than once
    assert sum(len(b) for b in again) == sum(len(b) for b in again) == 7
    with pytest.raises(ValueError, match="batch size must be >= 1, got 0"):
        batched(x, 0)


def test_channel_stats_needs_an_image():
    with pytest.raises(ValueError, match="at least one image"):
        channel_stats(np.zeros((0, 3, 4, 4), np.uint8))
