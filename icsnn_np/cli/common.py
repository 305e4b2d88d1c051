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

from ..backend import BackendError
from ..checks import check_choice, check_quantile, check_T
from ..runs.checks import check_count
from ..io.checkpoint import CheckpointError
from ..io.data import DatasetError
from ..runs.training import TrainingDiverged
from ..io.files import check_new_output, check_output_file  # noqa: F401 - the commands' helpers
from ..runs.outputs import (check_outputs, claim, recorded_command, with_ext,  # noqa: F401
                            write_outputs)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130                  # 128 + SIGINT, what a shell reports for Ctrl-C
ERRORS = (ValueError, CheckpointError, DatasetError, BackendError, TrainingDiverged, OSError,
          MemoryError)


def check_resumable(stem, log, force: bool, resume: bool):
    """``check_outputs`` for a run that keeps its measurements in ``<stem>.partial.json`` as
    it goes: its outputs may be replaced with ``--force``, or continued with ``--resume``."""
    partial = with_ext(stem, ".partial.json")
    check_outputs(stem, log, exts=(".partial.json",), force=True)
    check_outputs(stem, force=force or (resume and partial.is_file()),
                  hint=f" (or --resume, if an interrupted run left {partial.name})")


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


def version() -> str:
    """The package's version (``icsnn_np.__version__``)."""
    from .. import __version__  # noqa: PLC0415 - the package's own front door
    return __version__


def one_line(e: BaseException) -> str:
    """An exception's message on one line (MemoryError gets the way to fit)."""
    text = " ".join(s.strip() for s in str(e).splitlines() if s.strip()) or type(e).__name__
    if type(e) is MemoryError:             # NumPy's own; resources.SimulationTooLarge says how
        text = f"out of memory ({text}): use a smaller --batch-size or --chunk"
    return text


def run(main, argv=None, kept: str = "nothing was written") -> int:
    """``main(argv)`` with the package's errors as one line + exit 2 and Ctrl-C as one
    line + exit 130; ``argv=None`` reads ``sys.argv[1:]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
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
