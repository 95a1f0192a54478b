"""Allocator settings of a long-running command (`collect`), and giving freed pages back.

A collector holds little data, yet its resident memory grew well past what it holds because of
how freed memory is kept (1,000 series, `benchmarks/live.py`; benchmarks/README.md, "Memory"):

- glibc gives each thread that meets a busy arena one of its own (up to 8 per core), each
  keeping its freed pages: the start-up reads, the compaction threads and the folder fsyncs left
  several MB of free memory in arenas of threads that rarely run again. One arena for all: the
  start-up's reads of 1,000 series then leave 178 MB every time, where with two they left 178
  or 182 MB depending on the thread that ran them (most of a thread's work happens under the
  interpreter lock anyway, so the arena's lock adds little waiting);
- Arrow's default pool (mimalloc) keeps freed pages of its own; with glibc's allocator Arrow's
  freed buffers are returned like the rest (the collector's Arrow buffers are small and short-
  lived: one close, one partition);
- what the start-up freed stays resident until `malloc_trim` returns it.

Each of these is a few MB. (Fixed mmap and trim thresholds were tried too: no less memory at
4,000 series, and a close's p99 0.57-0.59 s where it was 0.26-0.31 s: each large buffer then
costs an mmap, its page faults and an munmap.)
"""

from __future__ import annotations

import ctypes
import logging

import pyarrow as pa

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt(3) parameter (malloc.h)
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
    if libc is not None and not libc.mallopt(_M_ARENA_MAX, ARENA_MAX):
        log.debug("mallopt(M_ARENA_MAX, %d) refused", ARENA_MAX)
    pa.set_memory_pool(pa.system_memory_pool())


def give_back() -> None:
    """Return the freed pages the allocators still hold to the system (a few ms): after a
    phase that allocated and freed a lot, such as the start-up's reads of every series."""
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
