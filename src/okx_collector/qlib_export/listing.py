"""One instrument's candle files, listed once per export: which hold a range, and their identity.

The exporter asks, for every month of every instrument, which files hold it and whether they
changed (`sources.SourceCache`). Asking the store each time lists the series folder and the
journal again (~0.2 ms a month, 600 times for 50 instruments x 12 months); a listing taken once
before an instrument's reads and once after answers every month from the partition names.
Journal files hold any range: while a series has some, ranges are asked of the store.
"""

from __future__ import annotations

from pathlib import Path

from okx_collector.qlib_export.sources import FileSig, Sig
from okx_collector.store.layout import (
    Partition,
    Period,
    candle_period,
    overlapping,
    partition_from_filename,
)
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe


class Listing:
    """The candle files of one series at one moment."""

    def __init__(self, store: Store, inst_id: str, tf: Timeframe) -> None:
        self._store = store
        self._inst_id = inst_id
        self._tf = tf
        directory = store.layout.candle_dir(inst_id, tf)
        period = candle_period(tf)
        self._parts: list[tuple[Partition, Path]] = []  # in the store's order
        self._journal = False  # does the journal hold rows of the series?
        for path in store.candle_partition_files(inst_id, tf):
            part = None
            if path.parent == directory:
                part = partition_from_filename(path.name, period) or partition_from_filename(
                    path.name, Period.DAY
                )
            if part is None:
                self._journal = True
            else:
                self._parts.append((part, path))
        self._stats: dict[Path, FileSig | None] = {}

    def files(self, start: int, end: int) -> list[Path]:
        """The files that may hold candles in [start, end)."""
        if self._journal:
            return self._store.candle_partition_files(self._inst_id, self._tf, start, end)
        parts = overlapping([p for p, _ in self._parts], start, end)
        keep = {p.key for p in parts}
        return [path for p, path in self._parts if p.key in keep]

    def sig(self, start: int, end: int) -> Sig | None:
        """The identity of the files holding [start, end), None if one of them is gone."""
        found = []
        for path in self.files(start, end):
            if path not in self._stats:
                self._stats[path] = _file_sig(path)
            sig = self._stats[path]
            if sig is None:
                return None
            found.append(sig)
        return tuple(found)


def _file_sig(path: Path) -> FileSig | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
