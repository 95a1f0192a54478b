"""Giving freed memory back to the system, for a process that runs for months.

Arrow's allocator and glibc's malloc both keep freed pages for reuse. After a burst (the start-up
repair, a day's merges) and over days of small allocations freed by other threads than the ones
that made them, what they keep shows up as RSS that only grows. Both can be asked to return it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import pyarrow as pa


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where there is none (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(
            ctypes.util.find_library("c") or "libc.so.6"
        ).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def give_back() -> None:
    """Return the free pages of Arrow's pool and of malloc's heap to the system (a few ms)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)
