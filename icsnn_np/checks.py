"""Argument checks where a value enters, once (not in the time-step loop): a clear line, no silent answer."""
from __future__ import annotations

import numpy as np

from .backend import to_host, xp_of

MAX_T = 1 << 24      # float32 sums over more steps no longer register one step's contribution


def check_T(T) -> int:
    """T must be a positive integer number of time steps, at most MAX_T (2**24)."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"T must be a positive integer number of time steps, got {T!r}")
    if T > MAX_T:
        raise ValueError(f"T = {T} time steps is more than {MAX_T:,} (2**24): float32 sums over "
                         f"that many steps no longer register a single step; use T <= {MAX_T}")
    return int(T)


def check_choice(value, allowed, what: str):
    """``value`` if it is one of ``allowed``, else a ValueError that lists them."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


def check_quantile(p) -> float:
    """The threshold quantile p must be a real number in (0, 1] (not a bool, not NaN)."""
    try:
        q = None if isinstance(p, bool) else float(p)
    except (TypeError, ValueError):
        q = None
    if q is None or not 0.0 < q <= 1.0:                      # also False for NaN
        raise ValueError(f"the threshold quantile p must be a number in (0, 1], got {p!r}")
    return q


def check_finite(a, what: str):
    """``a`` (host or device array, or scalar) has no NaN or inf; returns it unchanged."""
    ok = bool(xp_of(a).isfinite(a).all()) if hasattr(a, "shape") else \
        bool(np.all(np.isfinite(np.asarray(a, dtype=np.float64))))       # sync point: one bool
    if not ok:
        raise ValueError(f"{what} contains NaN or inf")
    return a


def check_threshold(v_th, where: str = "IF node"):
    """V_th must be finite and > 0 (<= 0 fires at every step, NaN never: a constant layer); returned."""
    host = np.asarray(to_host(v_th) if hasattr(v_th, "shape") else v_th)   # sync point: once
    if not np.issubdtype(host.dtype, np.number) or not np.all(np.isfinite(host)):
        raise ValueError(f"{where}: threshold V_th has NaN or inf, or is no number ({host.dtype}); it must be > 0")
    if not np.all(host > 0):
        raise ValueError(f"{where}: threshold V_th has a value <= 0 ({host.min():g}); it must be > 0")
    return v_th


def check_batch(x, what: str = "the input batch", model=None):
    """A non-empty, finite, floating-point (normalised) batch of images (N, C, H, W); given
    ``model``, of the channels and image size it takes (``check_image_size``)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[0] == 0:
        raise ValueError(f"{what} is empty (0 images)" if len(shape) == 4 else f"{what} must be "
                         f"a normalised batch of images (N, C, H, W), got shape {shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} is {x.dtype}, not a normalised float batch: raw images "
                         f"go through normalize(x, mean, std) first")
    return check_finite(x if model is None else check_image_size(model, x, what), what)


def check_image_size(model, x, what: str = "the input batch"):
    """``x`` (N, C, H, W) has the channels of ``model``'s first conv and the size its first Linear
    takes, by shape arithmetic (no run; a residual block's shortcut only joins its branch)."""
    mods = [m for n, m in model.named_modules() if not m.children and "shortcut" not in n]
    first = next((i for i, m in enumerate(mods) if hasattr(m, "in_features")), None)
    c = next((m.in_channels for m in mods if getattr(m, "in_channels", None)), x.shape[1])
    if x.shape[1] != c:
        raise ValueError(f"{what}: {x.shape[1]}-channel images, but the network's first conv takes {c}")

    def features(h, w, c=c):                 # what (c, h, w) images give the first Linear
        for m in mods[:first]:
            h, w = m.out_size(h, w) if hasattr(m, "out_size") else (h, w)
            c = getattr(m, "out_channels", c)
        return c * h * w if min(h, w) > 0 else None
    (h, w), n = x.shape[2:], first is not None and mods[first].in_features
    if n and features(h, w) != n:            # the side named: of those that fit, the one halved most
        side = max((s for s in range(1, 1025) if features(s, s) == n), key=lambda s: s & -s, default=0)
        size = f"{side}\u00d7{side} images" if side else "another image size"
        raise ValueError(f"{what}: the network expects {size} ({n:,} features at its first "
                         f"Linear), got {h}\u00d7{w}")
    return x
