"""threads.parallel_for: the split covers the range once, in order; nested sections run
sequentially; the BLAS is held to one thread once the workers take over, and
blas_threads() lends it back (checked with a fake BLAS that records its thread count)."""
from __future__ import annotations

import threading

import pytest

from icsnn_np import threads


class FakeBLAS:
    def __init__(self, n):
        self.n, self.history = n, []
        self.get = lambda: self.n
        self.set = self._set

    def _set(self, n):
        self.n = n
        self.history.append(n)


@pytest.fixture
def two_workers(monkeypatch):
    blas = FakeBLAS(2)
    threads._init()
    monkeypatch.setattr(threads, "_blas", blas)
    monkeypatch.setattr(threads, "_workers", 2)
    monkeypatch.setattr(threads, "_blas_threads_before", None)
    return blas


def test_split_covers_the_range_once_in_order(two_workers):
    parts = threads.parallel_for(lambda a, b: list(range(a, b)), 11, elements=1 << 20)
    assert len(parts) == 2 and sum(parts, []) == list(range(11))


def test_small_work_and_nested_sections_run_on_the_caller(two_workers):
    main = threading.get_ident()
    assert threads.parallel_for(lambda a, b: (a, b, threading.get_ident()), 8, elements=10) \
        == [(0, 8, main)]

    def outer(a, b):
        return threads.parallel_for(lambda c, d: (c, d), 4, elements=1 << 20)

    assert threads.parallel_for(outer, 2, elements=1 << 20) == [[(0, 4)], [(0, 4)]]


def test_blas_is_held_to_one_thread_after_a_section_and_lent_back(two_workers):
    blas = two_workers
    seen = []
    threads.parallel_for(lambda a, b: seen.append(blas.n), 4, elements=1 << 20, blas=True)
    assert seen == [1, 1]                    # one BLAS thread inside the section
    assert blas.n == 1                       # and after it: no spinning BLAS threads between
    assert threads.blas_thread_count() == 2  # what it had, for reports
    with threads.blas_threads():
        assert blas.n == 2                   # lent back for one large product
    assert blas.n == 1
    with threads.blas_threads(3):
        assert blas.n == 3
    assert blas.n == 1
