"""fast/cache.py: the data cache sizes read from a sysfs cache folder (a fake one here, laid
out as Linux's ``/sys/devices/system/cpu/cpu0/cache``): L1d from the level-1 data cache, L2
and L3 from data or unified caches, instruction caches left out, None for a level that is
missing or does not parse, and never an exception."""
from __future__ import annotations

import pytest

from icsnn_np.fast.cache import cache_sizes, parse_size


def fake_sysfs(root, entries):
    """index0, index1, ... under ``root``, each with the files given (level, type, size)."""
    for i, files in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text + "\n")
    return root


def entry(level, kind, size):
    return {"level": str(level), "type": kind, "size": size}


@pytest.mark.parametrize("text, expected", [
    ("32K", 32 << 10), ("1024K", 1 << 20), ("32768K", 32 << 20), ("16M", 16 << 20),
    ("1G", 1 << 30), ("512", 512), ("48 KB", 48 << 10), (" 2M\n", 2 << 20),
    ("", None), ("K", None), ("abc", None), ("-1K", None), ("1.5M", None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_a_usual_machine_gives_l1d_l2_l3_in_bytes(tmp_path):
    root = fake_sysfs(tmp_path / "cache", [entry(1, "Data", "48K"), entry(1, "Instruction", "32K"),
                                           entry(2, "Unified", "2048K"), entry(3, "Unified", "36M")])
    assert cache_sizes(root) == {"L1d": 48 << 10, "L2": 2 << 20, "L3": 36 << 20}


def test_the_instruction_cache_is_not_taken_for_l1d(tmp_path):
    root = fake_sysfs(tmp_path / "cache", [entry(1, "Instruction", "64K"), entry(2, "Unified", "512K")])
    assert cache_sizes(root) == {"L1d": None, "L2": 512 << 10, "L3": None}


def test_a_missing_folder_gives_none_everywhere(tmp_path):
    assert cache_sizes(tmp_path / "not_linux") == {"L1d": None, "L2": None, "L3": None}


def test_bad_entries_are_skipped_without_raising(tmp_path):
    root = fake_sysfs(tmp_path / "cache", [
        entry(1, "Data", "lots"),                 # size does not parse
        {"level": "2", "type": "Unified"},        # no size file
        entry("x", "Unified", "1M"),              # level does not parse
        entry(4, "Unified", "128M"),              # a level we do not report
        entry(3, "Unified", "8M")])
    (root / "index1" / "size").mkdir()            # a folder where a file should be: OSError
    assert cache_sizes(root) == {"L1d": None, "L2": None, "L3": 8 << 20}


def test_each_call_returns_its_own_dict(tmp_path):
    root = fake_sysfs(tmp_path / "cache", [entry(1, "Data", "32K")])
    a = cache_sizes(root)
    a["L1d"] = 0
    assert cache_sizes(root)["L1d"] == 32 << 10


def test_this_machine_answers_three_levels():
    got = cache_sizes()
    assert set(got) == {"L1d", "L2", "L3"}
    assert all(v is None or (isinstance(v, int) and v > 0) for v in got.values())
