"""Argument checks: bad input gets one clear line, never a silent answer. Each runs once,
where a value enters, never inside the time-step loop."""
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
    """V_th must be finite and > 0: a threshold <= 0 fires at every step and a NaN one never
    fires; either way the layer turns into a constant. Returns v_th."""
    host = np.asarray(to_host(v_th) if hasattr(v_th, "shape") else v_th)   # sync point: once
    if not np.issubdtype(host.dtype, np.number) or not np.all(np.isfinite(host)):
        raise ValueError(f"{where}: threshold V_th has NaN or inf, or is no number ({host.dtype}); it must be > 0")
    if not np.all(host > 0):
        raise ValueError(f"{where}: threshold V_th has a value <= 0 ({host.min():g}); it must be > 0")
    return v_th


def check_batch(x, what: str = "the input batch"):
    """A non-empty, finite, floating-point (normalised) batch of images (N, C, H, W)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[0] == 0:
        raise ValueError(f"{what} is empty (0 images)" if len(shape) == 4 else f"{what} must be "
                         f"a normalised batch of images (N, C, H, W), got shape {shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} is {x.dtype}, not a normalised float batch: raw images "
                         f"go through normalize(x, mean, std) first")
    return check_finite(x, what)
