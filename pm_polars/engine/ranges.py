"""Row numbers of sorted-column lookups, vectorised (no Python loop per key)."""

from __future__ import annotations

import numpy as np


def rows_in_ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Every row number in the half-open ranges ``[lo[i], hi[i])``, range after range
    (``lo``/``hi`` as from ``np.searchsorted`` left/right); int64, empty ranges skipped."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    sizes = np.maximum(hi - lo, 0)
    total = int(sizes.sum())
    if total == 0:
        return np.empty(0, np.int64)
    starts = np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)  # each range's offset
    return starts + np.arange(total, dtype=np.int64)
