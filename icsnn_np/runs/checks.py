"""The argument checks of the runs and the commands (the core's own are icsnn_np/checks.py)."""
from __future__ import annotations

import numpy as np


def check_count(n, what: str, minimum: int = 1) -> int:
    """An integer count >= ``minimum`` (images, batch size, epochs, ...)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {n!r}")
    return int(n)
