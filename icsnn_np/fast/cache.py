"""The CPU's data cache sizes, as Linux reports them for the first CPU.

    cache_sizes()    # {"L1d": 32768, "L2": 1048576, "L3": 33554432}; None where unknown

Read from ``/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}`` (a size such as
``32K``). Instruction caches are left out; a level with no data or unified cache, a folder
that is missing (not Linux) or a file that does not parse gives None for that level. The
benchmark records the sizes with the machine; the fast convolutions size their blocks from
the L2 (``l2_times``). Never raises.
"""
from __future__ import annotations

import functools
from pathlib import Path

SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int | None:
    """Bytes of a sysfs cache size (``"32K"``, ``"1024K"``, ``"16M"``, ``"512"``), else None."""
    s = text.strip().upper().removesuffix("B").replace(" ", "")
    unit = s[-1] if s[-1:] in ("K", "M", "G") else ""
    digits = s[:len(s) - len(unit)]
    return int(digits) * _UNITS[unit] if digits.isdigit() else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


@functools.lru_cache(maxsize=8)
def _sizes(root: str) -> tuple:
    found = {"L1d": None, "L2": None, "L3": None}
    try:
        folders = sorted(Path(root).glob("index*"))
    except OSError:
        folders = []
    for d in folders:
        level, kind, size = (_read(d / n) for n in ("level", "type", "size"))
        if level is None or kind is None or size is None or not level.strip().isdigit():
            continue
        if kind.strip().lower() not in ("data", "unified"):
            continue                                     # instruction caches
        name = {1: "L1d", 2: "L2", 3: "L3"}.get(int(level))
        b = parse_size(size)
        if name is not None and b is not None:
            found[name] = max(b, found[name] or 0)
    return tuple(found.items())


def cache_sizes(root: str | Path = SYSFS_CACHE) -> dict:
    """{"L1d", "L2", "L3": bytes or None} of the first CPU (``root``: the sysfs folder that
    holds ``index0``, ``index1``, ...). Never raises; a new dict each call."""
    try:
        return dict(_sizes(str(root)))
    except Exception:  # noqa: BLE001 - a machine record must not stop a run
        return {"L1d": None, "L2": None, "L3": None}


def l2_times(k: int, default: int) -> int:
    """k x this CPU's L2 cache in bytes, or ``default`` where its size is unknown."""
    l2 = cache_sizes()["L2"]
    return k * l2 if l2 else default
