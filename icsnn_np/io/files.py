"""Files written safely: atomically (a temporary name, then a rename), checked before work,
never replacing what a user had unless told, and one run per output at a time.

    atomic_write(path, lambda f: np.savez(f, **arrays))   # never a half-written file
    atomic_write_all({path: data, ...})                   # several files: all or none
    check_output_file(path, "--out")                      # before a long run starts
    check_new_output(path, "--out", force)                # an existing file is not replaced
    with exclusive(stem, log):                            # <stem>.lock: one run per output
        ...
    with failed_write_note(memo.kept):                    # a failed write says what was kept
        ...

A write that fails (disk full, file too large, no permission) raises WriteFailed, an
OSError naming the file and, inside ``failed_write_note``, what the run kept (e.g. its
measurements so far, for ``--resume``).
"""
from __future__ import annotations

import contextvars
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


class WriteFailed(OSError):
    """A file could not be written; the message names it and what was kept."""

    def __str__(self):
        return self.strerror


_NOTES = contextvars.ContextVar("failed_write_notes", default=())


@contextmanager
def failed_write_note(note):
    """Inside the block, a failed write also says ``note`` (a str, or a callable giving one
    when the write fails): what the run kept, e.g. "the 12 measurements made so far are in
    X.partial.json: rerun with --resume". The innermost note is the one said."""
    token = _NOTES.set(_NOTES.get() + (note,))
    try:
        yield
    finally:
        _NOTES.reset(token)


def _failed(path, e: OSError) -> WriteFailed:
    """``e`` (from writing ``path``) as one line naming the file and what was kept."""
    if isinstance(e, WriteFailed):
        return e
    notes = _NOTES.get()
    note = notes[-1]() if notes and callable(notes[-1]) else (notes[-1] if notes else "")
    return WriteFailed(e.errno, f"cannot write {path}: {e.strerror or e}; an earlier file of that "
                                f"name is unchanged" + (f"; {note}" if note else ""))


def atomic_write(path, write_fn, suffix=".tmp"):
    """Call ``write_fn(file_object)`` on a temp file next to ``path``, then rename over it.
    An OSError on the way is a WriteFailed naming ``path`` (and the note of
    ``failed_write_note``)."""
    try:
        tmp = _write_temp(path, write_fn, suffix)
    except OSError as e:
        raise _failed(path, e) from e
    try:
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _failed(path, e) from e
        raise


def atomic_write_all(files: dict, suffix=".tmp"):
    """Write several files as one: ``{path: bytes or write_fn}``. Every file goes to a temp
    name first; only when all are written are they renamed into place, one after another
    (microseconds apart), so an interruption while writing leaves the old set whole."""
    temps, path = {}, None
    try:
        for path, data in files.items():
            fn = data if callable(data) else (lambda f, b=data: f.write(b))
            temps[path] = _write_temp(path, fn, suffix)
        for path, tmp in list(temps.items()):
            os.replace(tmp, path)
            del temps[path]
    except OSError as e:
        raise _failed(path, e) from e
    finally:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)


def _write_temp(path, write_fn, suffix) -> str:
    """``write_fn`` on a new temp file beside ``path`` (flushed, synced, the usual mode)."""
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def check_output_file(path, what: str = "output file"):
    """Before any work starts: ``path`` can be written (atomically, as ``atomic_write``
    does). It must not be an existing folder, and the folder that will hold it (or, if that
    does not exist yet, its nearest existing ancestor) must take a new file; this is tried
    with a temporary file, removed at once, so nothing stray is left."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is an existing folder; name a file")
    if path.exists() and not path.is_file():
        raise ValueError(f"{what} {path} is not a regular file (a device, pipe or socket); name a file")
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


def check_new_output(path, what: str = "--out", force: bool = False, hint: str = ""):
    """``check_output_file``, and ``path`` must not exist unless ``force``: a finished
    result or a checkpoint is never replaced without being told (``--force``)."""
    path = check_output_file(path, what)
    if path.exists() and not force:
        flag = what if what.startswith("--") else "--out"     # e.g. "the best checkpoint"
        raise ValueError(f"{what} {path} exists: add --force to replace it{hint}, or name "
                         f"another {flag}")
    return path


# --------------------------------------------------------------------------- one run per output
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                   # alive, another user's
        return True
    except (OSError, OverflowError):
        return False
    return True


def _read_lock(lock: Path) -> dict:
    try:
        info = json.loads(lock.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _owner_alive(info: dict) -> bool:
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if info.get("host") not in (None, socket.gethostname()):
        return True                           # another machine's run: cannot tell, assume live
    return pid_alive(pid)


def _create_with(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` in one step (written under a temporary name, then
    hard-linked: the link fails if ``path`` exists), so no reader ever sees it empty.
    False if it exists."""
    tmp = _write_temp(path, lambda f: f.write(data), ".new")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def lock_path(stem) -> Path:
    stem = Path(stem)
    return stem.with_name(stem.name + ".lock")


def _command_of(pid: int) -> str | None:
    """The command line of process ``pid`` on this machine, where the system says (Linux's
    /proc); None where it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None


def _in_use(stem, what, lock, info) -> ValueError:
    """One line: who holds ``lock``, and when it is safe to delete it."""
    pid, host = info["pid"], info.get("host")
    since = f"started {info.get('started', '?')}"
    if host not in (None, socket.gethostname()):
        return ValueError(f"{what} {stem} is held by pid {pid} on host {host} ({since}; lock file "
                          f"{lock}): this machine cannot tell whether that run still goes on. Wait "
                          f"for it, or name another {what}; once no run on {host} writes to {stem} "
                          f"(pid {pid} there has ended), it is safe to delete {lock}")
    cmd, was = _command_of(pid), info.get("command")
    if cmd is not None and isinstance(was, str) and cmd != was:     # the pid now runs another program
        return ValueError(f"{what} {stem}: its lock file {lock} names pid {pid} ({since}), which "
                          f"now runs another program ({cmd[:60]!r}), not the run that made the lock "
                          f"({was[:60]!r}): that run ended and its pid was reused; it is safe to "
                          f"delete {lock} if no run of icsnn-np writes to {stem}")
    return ValueError(f"{what} {stem} is in use by another run (pid {pid} on this machine, {since}"
                      f"; lock file {lock}): wait for it to finish, or name another {what}; delete "
                      f"{lock} only if pid {pid} is not writing to {stem} (it is safe once it has ended)")


def check_not_in_use(stem, what: str = "--out", lock=None):
    """Before the other checks of an output: a live run holding ``stem`` is named as such,
    not reported as an existing file that --force or --resume would replace."""
    lock = Path(lock) if lock is not None else lock_path(stem)
    info = _read_lock(lock) if lock.exists() else {}
    if info.get("pid") != os.getpid() and _owner_alive(info):
        raise _in_use(stem, what, lock, info)


@contextmanager
def exclusive(stem, log=None, what: str = "--out", lock=None):
    """Hold ``<stem>.lock`` (or ``lock``) while the block runs: one run per output stem (or
    folder). A second run stops with one line naming the live process; a lock left by a
    process that no longer runs (killed) is taken over with a note to ``log``."""
    lock = Path(lock) if lock is not None else lock_path(stem)
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "command": _command_of(os.getpid())}).encode()   # tells a reused pid apart
    for _ in range(3):
        if _create_with(lock, mine):
            break
        seen = lock.read_bytes() if lock.exists() else b""
        info = _read_lock(lock)
        if _owner_alive(info):
            raise _in_use(stem, what, lock, info)
        if lock.exists() and lock.read_bytes() == seen:   # still the dead run's: take it over
            if log is not None:
                log(f"note: took over the stale lock {lock} (pid {info.get('pid', '?')} is no "
                    f"longer running)")
            lock.unlink(missing_ok=True)
    else:
        raise ValueError(f"{what} {stem}: could not take the lock file {lock}; try again")
    try:
        yield lock
    finally:
        if _read_lock(lock).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)
