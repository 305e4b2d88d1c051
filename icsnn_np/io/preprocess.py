"""What happens to images between the dataset and the network: normalisation, augmentation,
batches.

    mean, std = channel_stats(ds.x_train)   # per channel, of x/255 over the training images
    xb = normalize(augment(ds.x_train[:128], rng), mean, std, xp)   # float32 (128, 3, 32, 32)
    for xb in batched(x, 200): ...           # consecutive slices of an array
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..backend import to_device, to_host, xp_of


def check_normalisation(mean, std, where: str = "normalisation"):
    """Per-channel mean and std of x/255 (what ``preprocess.normalize`` divides by): finite,
    mean in [0, 1] and std in (0, 1]. Statistics on the 0-255 scale (mean 125, std 63) are
    refused by name: with them every normalised image is nearly the same constant."""
    try:
        m = np.asarray(mean, dtype=np.float64).reshape(-1)
        s = np.asarray(std, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: mean {mean!r} and std {std!r} must be numbers, one per "
                         f"channel") from None
    if m.size == 0 or s.size == 0 or m.size != s.size:
        raise ValueError(f"{where}: mean {m.tolist()} and std {s.tolist()} must hold one value "
                         f"per channel each")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
        raise ValueError(f"{where}: mean {m.tolist()} / std {s.tolist()} contain NaN or inf")
    if np.any(s <= 0):
        raise ValueError(f"{where}: std {s.tolist()} has a value <= 0; it must be > 0")
    if m.max() > 1 or s.max() > 1:
        scale = " (they look like statistics of 0-255 pixels)" if m.max() > 1.5 or s.max() > 1.5 else ""
        raise ValueError(f"{where}: mean {m.tolist()} / std {s.tolist()} are not on the scale "
                         f"of x/255 that the data loader uses{scale}: expected mean in [0, 1] "
                         f"and std in (0, 1]; divide them by 255")
    if m.min() < 0:
        raise ValueError(f"{where}: mean {m.tolist()} has a negative value; the mean of x/255 "
                         f"lies in [0, 1]")
    return mean, std


def channel_stats(x_uint8: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of x/255, float32 (3,) each.

    Accumulated in float64 over chunks of images, so 50,000 images never become one 1.2 GB
    float64 temporary and the sums stay exact enough (values in [0, 1]).
    """
    n, total, total_sq = 0, np.zeros(3), np.zeros(3)
    for i in range(0, len(x_uint8), chunk):
        f = np.asarray(x_uint8[i:i + chunk], dtype=np.float64) / 255.0   # (B, 3, H, W)
        total += f.sum(axis=(0, 2, 3))
        total_sq += np.square(f).sum(axis=(0, 2, 3))
        n += f.shape[0] * f.shape[2] * f.shape[3]
    if n == 0:
        raise ValueError("channel_stats needs at least one image")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x_uint8, mean, std, xp=np):
    """float32 (N, 3, H, W) = (x/255 - mean) / std on xp's device (mean, std: (3,), host ok).

    Refuses, once per call: mean/std that are not finite, std <= 0, statistics not on the
    x/255 scale (check_normalisation), a batch that is not (N, C, H, W), and any batch that
    is not uint8: float images are normalised or divided by 255 already, and normalising
    them again would make every image nearly one constant."""
    check_normalisation(mean, std, "normalize")
    shape = tuple(getattr(x_uint8, "shape", ()))
    if len(shape) != 4:
        raise ValueError(f"normalize takes raw images (N, C, H, W), got shape {shape}")
    if np.size(mean) not in (1, shape[1]):
        raise ValueError(f"normalize: {np.size(mean)} mean/std values for images with "
                         f"{shape[1]} channels")
    if np.dtype(x_uint8.dtype) != np.uint8:                 # the type says what the values are
        raise ValueError(f"normalize takes raw images, uint8 pixels 0..255, got {x_uint8.dtype}"
                         + (": already normalised or divided by 255?" if np.dtype(x_uint8.dtype).kind
                            == "f" else ""))
    x = to_device(x_uint8, xp).astype(xp.float32)
    m = to_device(np.asarray(mean, np.float32).reshape(-1, 1, 1), xp)   # (3, 1, 1)
    s = to_device(np.asarray(std, np.float32).reshape(-1, 1, 1), xp)
    x /= 255.0
    x -= m
    x /= s
    return x


def augment(x, rng: np.random.Generator, pad: int = 4):
    """Random crop from the zero-padded image plus random horizontal flip, per image.

    x: (N, C, H, W), any dtype, NumPy or CuPy; returns the same shape, dtype and module.
    Offsets and flips come from the host `rng` (same seed -> same result on both backends) and
    are applied with one gather: out[n, c, i, j] = padded[n, c, dy[n] + i, col[n, j]], where
    col[n] runs dx[n] .. dx[n]+W-1, reversed for flipped images.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    dy = rng.integers(0, 2 * pad + 1, size=n)                          # (N,)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    rows = dy[:, None] + np.arange(h)                                  # (N, H)
    cols = dx[:, None] + np.arange(w)                                  # (N, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    padded = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))       # (N, C, H+2p, W+2p)
    idx_n = to_device(np.arange(n)[:, None, None, None], xp)
    idx_c = to_device(np.arange(c)[None, :, None, None], xp)
    return padded[idx_n, idx_c, to_device(rows[:, None, :, None], xp),
                  to_device(cols[:, None, None, :], xp)]


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None
            ) -> Iterator[np.ndarray]:
    """Index arrays covering range(n) in batches; shuffled when `rng` is given; the last
    (partial) batch is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def batched(x, size: int) -> list:
    """Consecutive slices of ``x`` along its first axis, ``size`` rows each (the last may be
    shorter): the one batching helper of the package."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [x[i:i + size] for i in range(0, len(x), size)]
