"""A bounded cache of each series' most recently written partition, decoded.

The live collector appends a few candles to each series' current partition at every close;
without this every close would re-read and decode the whole file. An entry is only used while the
file on disk still has the identity it had when cached (inode, size, mtime), so a write by another
process, a recovery, or a user's edit is never masked.

Eviction is not plain LRU. A live job touches every series once per close, always in the same
order; when their files outgrow the cache, LRU evicts each entry just before it is needed again
and nothing ever hits. Here the series already cached keep their place (an entry that outgrows the
room left is dropped, not its neighbours), and a newcomer only displaces entries that have not been
used for `IDLE_S`: when the working set is too large, a stable part of it still hits.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

FileSig = tuple[int, int, int]  # (st_ino, st_size, st_mtime_ns)
IDLE_S = 600.0  # an entry unused this long may be evicted for a newcomer (live 1m: used each min)


def file_sig(path: Path) -> FileSig | None:
    """The identity of the file now at `path`, or None if there is none."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(slots=True)
class _Entry:
    path: Path  # the partition file the table was read from or written to
    sig: FileSig  # its identity at that moment
    table: pa.Table  # immutable, so it is safe to hand out
    nbytes: int  # table.nbytes, which is not free to compute
    used: float  # monotonic time of the last get or put


class TableCache:
    """One partition table per series directory, bounded by entries and bytes (eviction: see
    the module's docstring)."""

    def __init__(
        self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock  # for idleness
        self._max_entries = max_entries  # series kept at most
        self._max_bytes = max_bytes  # sum of cached tables' nbytes kept at most
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()  # series dir -> entry, LRU first
        self._bytes = 0  # current sum of nbytes
        self._lock = threading.Lock()  # guards the three fields above

    def get(self, series: Path, path: Path, sig: FileSig | None) -> pa.Table | None:
        """The cached table of `path` if the file still has identity `sig`."""
        if sig is None:
            return None
        with self._lock:
            entry = self._entries.get(series)
            if entry is None or entry.path != path or entry.sig != sig:
                return None
            entry.used = self._clock()
            self._entries.move_to_end(series)
            return entry.table

    def put(self, series: Path, path: Path, sig: FileSig | None, table: pa.Table) -> None:
        """Remember `table` as the content of `path` (with identity `sig`) for this series."""
        with self._lock:
            self._drop(series)
            size = table.get_total_buffer_size()  # (nbytes walks every column: 40x slower)
            if sig is None or self._max_entries <= 0 or size > self._max_bytes:
                return
            now = self._clock()
            while self._entries and not self._has_room(size):
                oldest = next(iter(self._entries))
                if self._entries[oldest].used > now - IDLE_S:
                    return  # every other entry is in use: this one stays out
                self._drop(oldest)
            if self._has_room(size):
                self._entries[series] = _Entry(path, sig, table, size, now)
                self._bytes += size

    def _has_room(self, size: int) -> bool:
        return len(self._entries) < self._max_entries and self._bytes + size <= self._max_bytes

    def invalidate(self, series: Path) -> None:
        with self._lock:
            self._drop(series)

    def _drop(self, series: Path) -> None:
        entry = self._entries.pop(series, None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes
