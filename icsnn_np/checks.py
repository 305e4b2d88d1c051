"""Argument checks shared by the package: bad input gets a clear error, never a silent answer.

Each check runs once where a value enters (a function's arguments, a loaded file), never
inside a time-step loop, and raises ValueError with one line that says what is wrong.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .backend import to_host, xp_of


# The most time steps a simulation may run: the output layer and Alg. 2 sum T float32
# values, and beyond 2**24 steps a float32 sum no longer changes by one step's contribution
# (its 24-bit significand), so more steps would not change the answer, only the run time.
MAX_T = 1 << 24


def check_T(T) -> int:
    """T must be a positive integer number of time steps, at most MAX_T (2**24)."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"T must be a positive integer number of time steps, got {T!r}")
    if T > MAX_T:
        raise ValueError(f"T = {T} time steps is more than {MAX_T:,} (2**24): float32 sums over "
                         f"that many steps no longer register a single step, so the answer "
                         f"would not change; use T <= {MAX_T}")
    return int(T)


def check_choice(value, allowed, what: str):
    """``value`` if it is one of ``allowed``, else a ValueError that lists them."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


def check_count(n, what: str, minimum: int = 1) -> int:
    """An integer count >= ``minimum`` (images, batch size, epochs, ...)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def check_quantile(p) -> float:
    """The threshold quantile p must lie in (0, 1]."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"the threshold quantile p must be a number in (0, 1], got {p!r}") from None
    if not 0.0 < p <= 1.0:                       # also False for NaN
        raise ValueError(f"the threshold quantile p must lie in (0, 1], got {p}")
    return p


def check_finite(a, what: str):
    """``a`` (host or device array, or scalar) has no NaN or inf; returns it unchanged."""
    if hasattr(a, "shape"):
        ok = bool(xp_of(a).isfinite(a).all())            # sync point: one bool
    else:
        ok = bool(np.all(np.isfinite(np.asarray(a, dtype=np.float64))))
    if not ok:
        raise ValueError(f"{what} contains NaN or inf")
    return a


def check_threshold(v_th, where: str = "IF node"):
    """V_th must be finite and > 0 everywhere: a threshold <= 0 fires at every step and a
    NaN one never fires, either way the layer turns into a constant. Returns v_th."""
    host = np.asarray(to_host(v_th) if hasattr(v_th, "shape") else v_th)   # sync point: once
    if not np.issubdtype(host.dtype, np.number) or not np.all(np.isfinite(host)):
        raise ValueError(f"{where}: threshold V_th has NaN or inf; it must be finite and > 0")
    if not np.all(host > 0):
        raise ValueError(f"{where}: threshold V_th has a value <= 0 ({host.min():g}); it must be > 0")
    return v_th


def check_batch(x, what: str = "the input batch"):
    """A non-empty, finite, floating-point (normalised) batch of images (N, C, H, W): raw
    uint8/int images and empty batches are refused here, where they enter. Returns x."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4:
        raise ValueError(f"{what} must be a normalised batch of images (N, C, H, W), "
                         f"got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{what} is empty (0 images)")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} is {x.dtype}, not a normalised float batch: raw images "
                         f"go through preprocess.normalize(x, mean, std) first")
    return check_finite(x, what)


def check_labels(y, n: int, what: str = "the labels"):
    """One integer label per image."""
    y = np.asarray(to_host(y) if hasattr(y, "shape") else y)
    if y.ndim != 1 or len(y) != n or (len(y) and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"{what}: expected {n} integer labels, got {y.dtype} {y.shape}")
    return y


def check_normalisation(mean, std, where: str = "normalisation"):
    """Per-channel mean and std of x/255 (what ``preprocess.normalize`` divides by): finite,
    mean in [0, 1] and std in (0, 1]. Statistics on the 0-255 scale (mean 125, std 63) are
    refused by name: with them every normalised image is nearly the same constant."""
    m = np.asarray(mean, dtype=np.float64).reshape(-1)
    s = np.asarray(std, dtype=np.float64).reshape(-1)
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


def check_output_file(path, what: str = "output file"):
    """Before any work starts: ``path`` can be written (atomically, as ``checkpoint.
    atomic_write`` does). It must not be an existing folder, and the folder that will hold it
    (or, if that does not exist yet, its nearest existing ancestor) must take a new file;
    this is tried with a temporary file, removed at once, so nothing stray is left."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is an existing folder; name a file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {path}: {folder} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=folder)
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)
    return path
