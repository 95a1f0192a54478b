"""Allocator settings of a long-running command (`collect`), and giving freed pages back.

A collector holds little data, yet its resident memory grew well past what it holds because of
how freed memory is kept (1,000 series, `benchmarks/live.py`; benchmarks/README.md, "memory"):

- glibc raises its mmap threshold to the size of any large block freed (Parquet and Thrift
  buffers of a few hundred KB), after which such buffers come from the heap and their pages stay
  resident once freed; a fixed threshold maps them and unmaps them on free;
- glibc gives each thread that meets a busy arena one of its own (up to 8 per core), each
  keeping its freed pages: the start-up reads, the compaction threads and the folder fsyncs left
  several MB of free memory in arenas of threads that rarely run again. One arena for all: the
  start-up's reads of 1,000 series then leave 178 MB every time, where with two they left 178
  or 182 MB depending on the thread that ran them (most of a thread's work happens under the
  interpreter lock anyway, so the arena's lock adds little waiting);
- Arrow's default pool (mimalloc) keeps freed pages of its own; with glibc's allocator Arrow's
  freed buffers are returned like the rest (the collector's Arrow buffers are small and short-
  lived: one close, one partition).

Each of these is a few MB; together they are what kept the collector above 200 MB.
"""

from __future__ import annotations

import ctypes
import logging

import pyarrow as pa

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed
TRIM_THRESHOLD = 128 * 1024  # free memory at the top of the heap beyond this is returned
ARENA_MAX = 1


def _libc() -> ctypes.CDLL | None:
    """glibc, or None elsewhere (musl, macOS): then the settings are skipped. (The symbols the
    process already has, not `ctypes.util.find_library`, which runs `ldconfig` in a child: a
    fork of the whole collector.)"""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_for_long_run() -> None:
    """Set the allocators for a long-running command. Call before its first thread starts
    (an arena limit applies to threads created after it)."""
    libc = _libc()
    if libc is not None:
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_ARENA_MAX, ARENA_MAX),
        ):
            if not libc.mallopt(param, value):
                log.debug("mallopt(%d, %d) refused", param, value)
    pa.set_memory_pool(pa.system_memory_pool())


def give_back() -> None:
    """Return the freed pages the allocators still hold to the system (a few ms): after a
    phase that allocated and freed a lot, such as the start-up's reads of every series."""
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
