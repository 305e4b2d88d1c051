"""Keep a long table run's measurements as they are made, so the run can span sittings.

    memo = Partial(cli.with_ext(out, ".partial.json"), fingerprint, resume=a.resume)
    entry = memo.get(key)          # a measurement an interrupted run of the same command made
    memo.put(key, entry)           # on disk at once (atomic write): a kill loses one measurement
    memo.finish()                  # the tables are written: the partial file is removed

A reproduction of ResNet-20 on 2,000 images at T = 8 ... 256 takes hours on two CPU cores,
longer than a sitting. The fingerprint is everything that decides the numbers (the
command's options and the checkpoint's SHA-256), so measurements are reused only by the
same run; conversion and simulation are deterministic for a seed, so a table finished in
two sittings equals one made in one (tests/test_demo.py checks it).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ..io.files import atomic_write, failed_write_note


def file_sha256(path) -> str:
    """SHA-256 of a file (a checkpoint: a few MB, read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _number(v, lo=-math.inf, hi=math.inf, integer=False) -> bool:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    return ok and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def check_entry(key: str, entry, n_images: int | None = None, labels=None):
    """One kept measurement, as ``reproduce.run_rows`` makes it: key ``setting|label|T`` and
    an object with acc, loss (points), firing_rate, prerun, steps and ``correct`` (which of
    the n images it got right, hex of the packed bits, agreeing with acc). Raises ValueError."""
    parts = key.split("|") if isinstance(key, str) else []
    if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) < 1:
        raise ValueError("has a key that is not 'setting|row label|T'")
    if labels is not None and parts[1] not in labels:
        raise ValueError(f"names an unknown row {parts[1]!r}")
    if not isinstance(entry, dict):
        raise ValueError(f"is a {type(entry).__name__}, not an object")
    missing = [k for k in ("acc", "loss", "firing_rate", "prerun", "steps", "correct") if k not in entry]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    if not (_number(entry["acc"], 0, 100) and _number(entry["loss"], -100, 100)
            and _number(entry["firing_rate"], 0) and _number(entry["prerun"], 0, integer=True)
            and _number(entry["steps"], 1, integer=True)):
        raise ValueError("has acc, loss, firing_rate, prerun or steps of the wrong type or range")
    if entry["steps"] != entry["prerun"] + int(parts[2]):
        raise ValueError(f"has steps = {entry['steps']}, not prerun + T = {entry['prerun'] + int(parts[2])}")
    correct = entry["correct"]
    try:
        bits = bytes.fromhex(correct) if isinstance(correct, str) else None
    except ValueError:
        bits = None
    if bits is None or (n_images is not None and len(bits) != (n_images + 7) // 8):
        raise ValueError(f"has no per-image record for {n_images} images ('correct': hex of "
                         f"{((n_images or 0) + 7) // 8} bytes)")
    if n_images is not None:
        right = int(np.unpackbits(np.frombuffer(bits, np.uint8))[:n_images].sum())
        if abs(100.0 * right / n_images - entry["acc"]) > 0.006:
            raise ValueError(f"has acc {entry['acc']} but its record counts {right} of {n_images} right")


class Partial:
    """The measurements of one run, by key, mirrored in ``path``."""

    def __init__(self, path, fingerprint: dict, resume: bool, n_images: int | None = None,
                 labels=None):
        """``n_images`` and ``labels`` (the row labels a key may name), when given, let every
        kept measurement be checked before the first new one (``check_entry``)."""
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint))     # tuples -> lists, as stored
        self.done: dict = {}
        if not self.path.exists():
            return
        if not resume:
            raise ValueError(f"{self.path} holds the measurements of an interrupted run: add "
                             f"--resume to continue it, or delete the file to start afresh")
        try:
            saved = json.loads(self.path.read_text())
            old, done = saved["fingerprint"], saved["done"]
            if not (isinstance(old, dict) and isinstance(done, dict)):
                raise ValueError("fingerprint and done must be objects")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{self.path} is not a readable partial-results file ({e}); "
                             f"delete it to start afresh") from None
        if old != self.fingerprint:
            differ = sorted(k for k in set(old) | set(self.fingerprint)
                            if old.get(k) != self.fingerprint.get(k))
            raise ValueError(f"{self.path} was made by a different run (it differs in: "
                             f"{', '.join(differ)}); repeat that run's options with --resume, "
                             f"or delete the file to start afresh")
        for key, entry in done.items():
            try:
                check_entry(key, entry, n_images, labels)
            except ValueError as e:
                raise ValueError(f"{self.path}: measurement {key!r} {e}; delete the file to start "
                                 f"afresh") from None
        self.done = done

    def __len__(self):
        return len(self.done)

    def get(self, key: str):
        return self.done.get(key)

    def put(self, key: str, entry: dict):
        self.done[key] = entry
        text = json.dumps({"fingerprint": self.fingerprint, "done": self.done}, indent=1)
        before = len(self.done) - 1            # what the file holds if this write fails
        note = (f"the {before} measurements made before are kept in it: rerun with --resume"
                if before else "no measurement was kept")
        with failed_write_note(note):
            atomic_write(self.path, lambda f: f.write(text.encode()))

    def finish(self):
        self.path.unlink(missing_ok=True)

    def kept(self) -> str:
        """For the Ctrl-C line: where the measurements so far are."""
        if not self.done:
            return "no measurement was finished"
        return f"the {len(self.done)} measurements made so far are in {self.path}: rerun with --resume"
