"""A bounded cache of each series' most recently written partition, decoded.

The live collector appends a few candles to each series' current partition at every close;
without this every close would re-read and decode the whole file. An entry is only used while the
file on disk still has the identity it had when cached (inode, size, mtime), so a write by another
process, a recovery, or a user's edit is never masked.

Entries are kept as Arrow IPC bytes, one block each, not as tables: a decoded 60-row table costs
~17 KB of process memory in a dozen small allocations for ~5 KB of data, its bytes ~7 KB, and
turning them back into a table is zero-copy (~20 us, against ~130 us to decode the file).

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
import pyarrow.ipc as ipc

FileSig = tuple[int, int, int]  # (st_ino, st_size, st_mtime_ns)
IDLE_S = 600.0  # an entry unused this long may be evicted for a newcomer (live 1m: used each min)


def file_sig(path: Path) -> FileSig | None:
    """The identity of the file now at `path`, or None if there is none."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def freeze(table: pa.Table) -> bytes:
    """`table` as one block of Arrow IPC stream bytes (what an entry keeps)."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()  # exact size, not the stream's grown capacity
    return data


def thaw(data: bytes) -> pa.Table:
    """The table `freeze` made, as zero-copy views of `data` (immutable, so safe to share)."""
    return ipc.open_stream(pa.py_buffer(data)).read_all()


_IPC_OPTIONS = ipc.IpcWriteOptions(use_threads=False)


@dataclass(slots=True)
class _Entry:
    path: Path  # the partition file the table was read from or written to
    sig: FileSig  # its identity at that moment
    data: bytes  # the table, frozen
    used: float  # monotonic time of the last get or put


class TableCache:
    """One partition table per series directory, bounded by entries and bytes (eviction: see
    the module's docstring)."""

    def __init__(
        self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock  # for idleness
        self._max_entries = max_entries  # series kept at most
        self._max_bytes = max_bytes  # sum of the entries' sizes (frozen bytes) kept at most
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
            data = entry.data
        return thaw(data)

    def put(self, series: Path, path: Path, sig: FileSig | None, table: pa.Table) -> None:
        """Remember `table` as the content of `path` (with identity `sig`) for this series."""
        wanted = sig is not None and self._max_entries > 0 and self._max_bytes > 0
        data = freeze(table) if wanted else b""
        size = len(data)
        with self._lock:
            self._drop(series)
            if sig is None or not data or size > self._max_bytes:
                return
            now = self._clock()
            while self._entries and not self._has_room(size):
                oldest = next(iter(self._entries))
                if self._entries[oldest].used > now - IDLE_S:
                    return  # every other entry is in use: this one stays out
                self._drop(oldest)
            if self._has_room(size):
                self._entries[series] = _Entry(path, sig, data, now)
                self._bytes += size

    def _has_room(self, size: int) -> bool:
        return len(self._entries) < self._max_entries and self._bytes + size <= self._max_bytes

    def invalidate(self, series: Path) -> None:
        with self._lock:
            self._drop(series)

    def _drop(self, series: Path) -> None:
        entry = self._entries.pop(series, None)
        if entry is not None:
            self._bytes -= len(entry.data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes
