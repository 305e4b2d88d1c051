"""Save and load a model in one ``.npz``: weights by PyTorch-style name + a JSON header.

The header (``__meta__``) records the format version, the architecture name and its build
arguments, and anything the caller adds (normalisation mean/std, accuracy, epoch, ...), so a
checkpoint rebuilds its model without outside knowledge. Writes are atomic (temp file in
the same folder + ``os.replace``): an interrupted save never destroys an existing file.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .backend import to_host
from .models import build_model

FORMAT = "icsnn-np-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or does not match its model."""


def atomic_write(path, write_fn, suffix=".tmp"):
    """Call ``write_fn(file_object)`` on a temp file next to ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)                   # mkstemp makes 0600 files: give the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, model, arch: str, num_classes: int, meta: dict | None = None,
                    dtype=None):
    """Write ``model``'s weights and header to ``path`` atomically.

    ``dtype`` (e.g. ``np.float16``) stores weights in a smaller type; they are cast back to
    float32 on load.
    """
    header = {"format": FORMAT, "version": VERSION, "arch": arch, "num_classes": int(num_classes),
              **(meta or {})}
    arrays = {}
    for name, arr in model.state_dict().items():
        a = to_host(arr)
        arrays[name] = a.astype(dtype) if dtype is not None else a
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return Path(path)


def read_checkpoint(path):
    """Return (header dict, {name: float32 array}); raise CheckpointError on any damage."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):      # a bare .npy array, not an archive
            raise CheckpointError(f"{path} is a single array, not an icsnn-np checkpoint archive")
        with z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"{path} is not an icsnn-np checkpoint (no __meta__ header)")
            header = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from e
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an icsnn-np checkpoint (format {header.get('format')!r})")
    if header.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has format version {header['version']}, newer than this "
                              f"package understands ({VERSION}); upgrade icsnn-np")
    for k, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{path}: tensor {k} contains NaN or inf")
    return header, {k: a.astype(np.float32) for k, a in arrays.items()}


def load_checkpoint(path, arch: str | None = None):
    """Rebuild the model a checkpoint describes and load its weights.

    Returns (model, header). If ``arch`` is given and differs from the file's, or any tensor
    is missing, unexpected or mis-shaped, raises CheckpointError naming it.
    """
    header, arrays = read_checkpoint(path)
    if arch is not None and header["arch"] != arch:
        raise CheckpointError(f"{path} holds a {header['arch']!r} model, not {arch!r}")
    try:
        model = build_model(header["arch"], num_classes=header["num_classes"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    check_state_dict(model, arrays, source=str(path))
    model.load_state_dict(arrays)
    return model, header


def check_state_dict(model, arrays: dict, source: str = "state_dict"):
    """Raise CheckpointError naming the first missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    for name, p in own.items():
        if name not in arrays:
            raise CheckpointError(f"{source}: missing tensor {name!r} (shape {tuple(p.shape)})")
        if tuple(arrays[name].shape) != tuple(p.shape):
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(arrays[name].shape)}, "
                                  f"model expects {tuple(p.shape)}")
    for name in arrays:
        if name not in own:
            raise CheckpointError(f"{source}: unexpected tensor {name!r}")
