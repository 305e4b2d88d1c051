"""fast/threads.py and fast/blas.py: parallel_for covers the range once, in order; nested
sections run on the caller; ``hold_blas()`` holds the BLAS to one thread inside and gives
back what it had after (nested holds too), and nothing holds it at import (checked with a
fake BLAS that records its thread count, and with the real OpenBLAS in a fresh process)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from icsnn_np.fast import blas, threads


class FakeBLAS:
    """An OpenBLAS stand-in: get_threads / set_threads, with a history of the counts set."""

    def __init__(self, n):
        self.n, self.history = n, []

    def get_threads(self):
        return self.n

    def set_threads(self, n):
        self.n = n
        self.history.append(n)


@pytest.fixture
def two_workers(monkeypatch):
    """Two workers and a fake BLAS with two threads (nothing held yet)."""
    fake = FakeBLAS(2)
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "openblas", lambda: fake)
    monkeypatch.setattr(threads, "_held", {"depth": 0, "saved": None})
    return fake


def test_split_covers_the_range_once_in_order(two_workers):
    parts = threads.parallel_for(lambda a, b: list(range(a, b)), 11, elements=1 << 20)
    assert len(parts) == 2 and sum(parts, []) == list(range(11))


def test_work_runs_on_two_threads(two_workers):
    ids = threads.parallel_for(lambda a, b: threading.get_ident(), 4, elements=1 << 20)
    assert len(set(ids)) == 2 and ids[0] == threading.get_ident()   # the caller takes slice 0


def test_small_work_and_nested_sections_run_on_the_caller(two_workers):
    main = threading.get_ident()
    assert threads.parallel_for(lambda a, b: (a, b, threading.get_ident()), 8, elements=10) \
        == [(0, 8, main)]
    assert threads.parallel_for(lambda a, b: (a, b), 1, elements=1 << 20) == [(0, 1)]

    def outer(a, b):
        return threads.parallel_for(lambda c, d: (c, d), 4, elements=1 << 20)

    assert threads.parallel_for(outer, 2, elements=1 << 20) == [[(0, 4)], [(0, 4)]]


def test_one_worker_runs_everything_on_the_caller(monkeypatch):
    monkeypatch.setattr(threads, "num_workers", lambda: 1)
    assert threads.parallel_for(lambda a, b: (a, b, threading.get_ident()), 9, elements=1 << 30) \
        == [(0, 9, threading.get_ident())]


def test_blas_is_held_to_one_thread_inside_a_blas_section_and_given_back(two_workers):
    fake = two_workers
    seen = []
    threads.parallel_for(lambda a, b: seen.append(fake.n), 4, elements=1 << 20, blas=True)
    assert seen == [1, 1]                    # one BLAS thread inside the section
    assert fake.n == 2                       # and what it had after it
    threads.parallel_for(lambda a, b: seen.append(fake.n), 4, elements=1 << 20)
    assert seen[2:] == [2, 2]                # a section without BLAS calls changes nothing


def test_hold_blas_restores_the_count_and_nests(two_workers):
    fake = two_workers
    fake.n = 3
    with threads.hold_blas():
        assert fake.n == 1
        with threads.hold_blas():            # nested: still one thread ...
            assert fake.n == 1
        assert fake.n == 1                   # ... and the inner exit does not give it back
    assert fake.n == 3
    assert fake.history == [1, 3]            # set once on entry, once on the last exit


def test_hold_blas_gives_back_after_an_error(two_workers):
    fake = two_workers
    with pytest.raises(KeyError):
        with threads.hold_blas():
            raise KeyError("boom")
    assert fake.n == 2 and threads._held["depth"] == 0


def test_hold_blas_changes_nothing_with_one_worker_or_no_openblas(monkeypatch):
    fake = FakeBLAS(2)
    monkeypatch.setattr(threads, "openblas", lambda: fake)
    monkeypatch.setattr(threads, "num_workers", lambda: 1)
    with threads.hold_blas():
        assert fake.n == 2
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    monkeypatch.setattr(threads, "openblas", lambda: None)
    with threads.hold_blas():                # no BLAS to hold: runs, holds nothing
        pass
    assert fake.history == [] and not threads.blas_splittable()


def test_num_workers_follows_the_environment(monkeypatch):
    threads.num_workers.cache_clear()
    try:
        monkeypatch.setenv("ICSNN_NUM_THREADS", "3")
        assert threads.num_workers() == 3
        threads.num_workers.cache_clear()
        monkeypatch.setenv("ICSNN_NUM_THREADS", "")
        assert threads.num_workers() == max(1, blas.thread_count() or 1)
    finally:
        monkeypatch.undo()
        threads.num_workers.cache_clear()


# --------------------------------------------------------------------------- the real BLAS
needs_openblas = pytest.mark.skipif(blas.openblas() is None, reason="no controllable OpenBLAS")


@needs_openblas
def test_hold_blas_on_the_real_openblas(monkeypatch):
    monkeypatch.setattr(threads, "num_workers", lambda: 2)
    before = blas.thread_count()
    lib = blas.openblas()
    lib.set_threads(2)
    try:
        with threads.hold_blas():
            assert blas.thread_count() == 1
            with threads.hold_blas():
                assert blas.thread_count() == 1
            assert blas.thread_count() == 1
        assert blas.thread_count() == 2
    finally:
        lib.set_threads(before)
    assert isinstance(lib.core, (str, type(None)))


def _fresh_python(code: str, **env) -> str:
    import os
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, **env})
    return r.stdout.strip().splitlines()[-1]


@needs_openblas
def test_importing_the_package_leaves_the_blas_alone():
    """With two workers and two BLAS threads (where the old package held the BLAS to one
    thread at import), importing every module that simulates or trains changes nothing.
    The count before is read by blas.py loaded on its own, before any icsnn_np import."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('probe', {str(Path(blas.__file__))!r})\n"
            "probe = sys.modules['probe'] = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(probe)\n"
            "before = probe.thread_count()\n"
            "assert not [m for m in sys.modules if m.startswith('icsnn_np')]\n"
            "import icsnn_np, icsnn_np.layers, icsnn_np.simulate, icsnn_np.fast, icsnn_np.fast.engine\n"
            "import icsnn_np.fast.threads, icsnn_np.fast.conv, icsnn_np.runs.training\n"
            "from icsnn_np.fast.blas import thread_count\n"
            "print(before, probe.thread_count(), thread_count())\n")
    before, after, seen = map(int, _fresh_python(code, OPENBLAS_NUM_THREADS="2",
                                                 ICSNN_NUM_THREADS="2").split())
    assert before == 2, "the check needs a BLAS with two threads"
    assert after == seen == before


def test_importing_the_bench_reads_no_argv_and_edits_no_environment():
    """``import icsnn_np.bench`` (and its command-line module) must not parse sys.argv or
    set variables: it is imported by tests and notebooks, not only run."""
    code = ("import json, os, sys\n"
            "class Spy(list):\n"
            "    reads = 0\n"
            "    def __getitem__(self, i):\n"
            "        Spy.reads += 1\n"
            "        return list.__getitem__(self, i)\n"
            "    def __iter__(self):\n"
            "        Spy.reads += 1\n"
            "        return list.__iter__(self)\n"
            "    def __len__(self):\n"
            "        Spy.reads += 1\n"
            "        return list.__len__(self)\n"
            "sys.argv = Spy(['prog', '--quick', '--bogus-flag'])\n"
            "env = dict(os.environ)\n"
            "import icsnn_np.bench, icsnn_np.bench.__main__, icsnn_np.bench.parts\n"
            "import icsnn_np.bench.twins, icsnn_np.bench.measure, icsnn_np.bench.report\n"
            "changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))\n"
            "print(json.dumps({'reads': Spy.reads, 'changed': changed, 'torch': 'torch' in sys.modules}))\n")
    res = json.loads(_fresh_python(code))
    assert res == {"reads": 0, "changed": [], "torch": False}
