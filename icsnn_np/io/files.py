"""Files written safely: atomically (a temporary name, then a rename), checked before work.

    atomic_write(path, lambda f: np.savez(f, **arrays))   # never a half-written file
    check_output_file(path, "--out")                      # before a long run starts
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
