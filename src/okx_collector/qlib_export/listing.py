"""One instrument's candle files, listed once per export: which hold a range, and their identity.

The exporter asks, for every month of every instrument, which files hold it and whether they
changed (`sources.SourceCache`). Asking the store each time lists the series folder and the
journal again (~0.2 ms a month, 600 times for 50 instruments x 12 months); a listing taken once
before an instrument's reads answers every month from the partition names.
Journal files hold any range: while the journal holds any file, ranges are asked of the store.
"""

from __future__ import annotations

import os
from pathlib import Path

from okx_collector.qlib_export.sources import FileSig, Sig
from okx_collector.store.layout import candle_period, list_partitions, overlapping
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe


class Listing:
    """The candle files of one series at one moment."""

    def __init__(self, store: Store, inst_id: str, tf: Timeframe, journal: bool) -> None:
        self._store = store
        self._inst_id = inst_id
        self._tf = tf
        self._dir = str(store.layout.candle_dir(inst_id, tf))
        # May the journal hold rows of the series? (`store.journal_pending()`, asked once per
        # export: a journal file written after that is in the next export's listing, and makes
        # every month it touches differ from what this one remembers.)
        self._journal = journal
        self._parts = list_partitions(Path(self._dir), candle_period(tf))  # oldest first
        self._stats: dict[str, FileSig | None] = {}

    def files(self, start: int, end: int) -> list[Path]:
        """The files that may hold candles in [start, end)."""
        if self._journal:
            return self._store.candle_partition_files(self._inst_id, self._tf, start, end)
        return [Path(self._dir, p.filename) for p in overlapping(self._parts, start, end)]

    def sig(self, start: int, end: int) -> Sig | None:
        """The identity of the files holding [start, end), None if one of them is gone."""
        if self._journal:
            names = [str(p) for p in self.files(start, end)]
        else:
            names = [f"{self._dir}/{p.filename}" for p in overlapping(self._parts, start, end)]
        return files_sig(names, self._stats)


def files_sig(names: list[str], stats: dict[str, FileSig | None]) -> Sig | None:
    """The identity of the files `names` (each stat'ed once per `stats` cache), None if one of
    them is gone."""
    found = []
    for name in names:
        if name not in stats:
            stats[name] = _file_sig(name)
        sig = stats[name]
        if sig is None:
            return None
        found.append(sig)
    return tuple(found)


def _file_sig(path: str) -> FileSig | None:
    # (os.stat of a string: a Path per file costs more than the stat, thousands of times)
    try:
        st = os.stat(path)  # noqa: PTH116
    except OSError:
        return None
    return (path.rsplit("/", 1)[-1], st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
