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
from pathlib import Path

from ..io.files import atomic_write


def file_sha256(path) -> str:
    """SHA-256 of a file (a checkpoint: a few MB, read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Partial:
    """The measurements of one run, by key, mirrored in ``path``."""

    def __init__(self, path, fingerprint: dict, resume: bool):
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
        self.done = done

    def __len__(self):
        return len(self.done)

    def get(self, key: str):
        return self.done.get(key)

    def put(self, key: str, entry: dict):
        self.done[key] = entry
        text = json.dumps({"fingerprint": self.fingerprint, "done": self.done}, indent=1)
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def finish(self):
        self.path.unlink(missing_ok=True)

    def kept(self) -> str:
        """For the Ctrl-C line: where the measurements so far are."""
        if not self.done:
            return "no measurement was finished"
        return f"the {len(self.done)} measurements made so far are in {self.path}: rerun with --resume"
