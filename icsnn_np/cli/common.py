"""What every command line of the package shares: one-line errors, exit codes and Ctrl-C.

    def main(argv=None):
        return cli.run(_main, argv)      # _main(argv) parses (cli.ArgumentParser) and works

* Bad input ends with ONE line on stderr, ``error: <what is wrong>``, and exit code 2: an
  argument argparse refuses, and any of the package's errors (ValueError, CheckpointError,
  DatasetError, BackendError, TrainingDiverged, an OSError on a file, a simulation too
  large for memory). Never a traceback for bad input; a bug still shows its traceback.
* Ctrl-C ends with one line that says what was kept, and exit code 130 (128 + SIGINT):
  long jobs that write as they go raise ``Interrupted(kept)`` (train: the last complete
  checkpoint); otherwise the command's ``kept`` message applies.
* Arguments are checked when they are parsed (the ``type=`` helpers below reuse
  checks.py), so nothing starts before the whole command line is known to be valid.
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from ..backend import BackendError, use_standin
from ..checks import check_choice, check_count, check_quantile, check_T
from ..io.checkpoint import CheckpointError
from ..io.data import DatasetError
from ..io.files import (atomic_write_all, check_new_output, check_not_in_use, check_output_file,
                        exclusive)
from ..optim import TrainingDiverged

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130                  # 128 + SIGINT, what a shell reports for Ctrl-C
ERRORS = (ValueError, CheckpointError, DatasetError, BackendError, TrainingDiverged, OSError,
          MemoryError)


def recorded_command(prog: str, argv, cwd=None) -> str:
    """The command line as a results file records it: ``prog`` and ``argv`` without ``--log``
    (where a run logged is no part of its result) and without machine folders: an absolute
    path inside ``cwd`` (default: the working folder) becomes relative to it, one outside
    it becomes its file name (a reader has neither folder)."""
    cwd = Path(cwd or os.getcwd()).resolve()
    words, skip = [], False
    for word in argv:
        if skip or word.startswith("--log="):
            skip = False
            continue
        if word == "--log":
            skip = True
            continue
        if os.path.isabs(word):
            path = Path(word).resolve()
            word = str(path.relative_to(cwd)) if path.is_relative_to(cwd) else path.name
        words.append(word)
    return " ".join([prog] + words)


def with_ext(stem, ext: str) -> Path:
    """``stem`` + ``ext``: a stem may contain dots (``..._p0.999``), so no with_suffix."""
    stem = Path(stem)
    return stem.with_name(stem.name + ext)


def check_outputs(stem, log=None, exts=(".json", ".md", ".png"), force=False, hint=""):
    """Before any work: every ``stem`` + ext (``--out``) and the ``--log`` file can be
    written, and no ``stem`` + ext exists unless ``force`` (a result is never replaced
    without being told); a live run on ``stem`` is named first."""
    check_not_in_use(stem)
    for ext in exts:
        check_new_output(with_ext(stem, ext), "--out", force, hint)
    if log:
        check_output_file(log, "--log")


def write_outputs(stem, data: dict):
    """``{ext: bytes}`` as ``stem`` + ext, all or none (io.files.atomic_write_all)."""
    atomic_write_all({with_ext(stem, ext): b for ext, b in data.items()})


def claim(stem, log=None, what="--out", lock=None):
    """Hold ``stem`` for this run (``<stem>.lock``, or ``lock``; io.files.exclusive): a second
    run on the same output stops with one line naming the process that holds it."""
    return exclusive(stem, log, what, lock)


def log_stderr(s: str):
    """Progress and notes: stderr, flushed (shows at once when stderr is a file or a pipe)."""
    print(s, file=sys.stderr, flush=True)


@contextmanager
def progress_log(path=None):
    """Yield ``log(line)``: print to stderr and, with ``path``, append to that file too."""
    f = None
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")

    def log(s):
        print(s, file=sys.stderr, flush=True)
        if f:
            print(s, file=f, flush=True)

    try:
        yield log
    finally:
        if f:
            f.close()


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``error: ... (see <prog> --help)``, exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


class UsageError(ValueError):
    """A command-line argument is wrong."""


def one_line(e: BaseException) -> str:
    """An exception's message on one line (MemoryError gets the way to fit)."""
    text = " ".join(s.strip() for s in str(e).splitlines() if s.strip()) or type(e).__name__
    if type(e) is MemoryError:             # NumPy's own; resources.SimulationTooLarge says how
        text = f"out of memory ({text}): use a smaller --batch-size or --chunk"
    return text


STANDIN_ENV = "ICSNN_CUPY_STANDIN"


def plug_standin():
    """``ICSNN_CUPY_STANDIN=1``: ``--backend cupy`` runs on the strict CPU stand-in for CuPy
    (icsnn_np.testing), so the CuPy path of every command is checked without a GPU."""
    if os.environ.get(STANDIN_ENV) == "1":
        from ..testing import cupy_standin  # noqa: PLC0415 - a testing aid, only when asked for
        use_standin(cupy_standin)


def run(main, argv=None, kept: str = "nothing was written") -> int:
    """``main(argv)`` with the package's errors as one line + exit 2 and Ctrl-C as one
    line + exit 130; ``argv=None`` reads ``sys.argv[1:]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    plug_standin()
    try:
        return main(argv)
    except KeyboardInterrupt as e:
        print(f"error: interrupted (Ctrl-C); {getattr(e, 'kept', None) or kept}",
              file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except ERRORS as e:
        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_ERROR


# --------------------------------------------------------------------------- argparse types
def _typed(check, convert=None, kind="a number"):
    """An argparse ``type=`` from a checks.py function: its ValueError becomes the message."""
    def parse(text):
        try:
            value = convert(text) if convert else text
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def steps():
    """Time steps T: an integer in 1 .. checks.MAX_T."""
    return _typed(check_T, int, "an integer number of time steps")


def count(what: str, minimum: int = 1):
    """An integer count >= ``minimum`` (images, epochs, a batch size, ...)."""
    return _typed(lambda n: check_count(n, what, minimum), int, "an integer")


def quantile():
    """A threshold quantile p in (0, 1]."""
    return _typed(check_quantile, float, "a number in (0, 1]")


def choice(allowed, what: str):
    """One of ``allowed`` (names checked when parsed, listed in the message)."""
    allowed = tuple(allowed)
    return _typed(lambda v: check_choice(v, allowed, what))
