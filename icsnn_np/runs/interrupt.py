"""Ctrl-C in a long run: one line that says what was kept (a checkpoint, a table, nothing).

    with kept_on_interrupt(lambda: f"kept {out} (epoch {done})"):
        ...                           # a KeyboardInterrupt here becomes Interrupted(kept)

The command lines (cli/common.py) print ``Interrupted.kept`` and exit with code 130.
"""
from __future__ import annotations

from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying one line about what was kept."""

    def __init__(self, kept: str):
        super().__init__(kept)
        self.kept = kept


@contextmanager
def kept_on_interrupt(kept):
    """Turn a Ctrl-C inside the block into ``Interrupted(kept)`` (``kept``: a string or a
    function returning one, asked at the moment of the interruption)."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt as e:
        raise Interrupted(kept() if callable(kept) else kept) from e
