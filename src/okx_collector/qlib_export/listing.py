"""One series' files, listed once per export: which hold a range, and their identity.

The exporter asks, for every month of every instrument, which files hold it and whether they
changed (`sources.SourceCache`). Asking the store each time lists the series folder and the
journal again (~0.2 ms a month, 600 times for 50 instruments x 12 months, and every journal file
looked at again each time); a listing taken once before an instrument's reads answers every month
from the partition names and the journal files' key ranges (`Store.journal_spans`).
"""

from __future__ import annotations

import os

from okx_collector.qlib_export.sources import FileSig, Sig
from okx_collector.store.journal import JournalSpan
from okx_collector.store.layout import list_partitions, overlapping
from okx_collector.store.schema import Kind
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe


class Listing:
    """The files of one series (candles, or a kind of `schema.TIMEFRAME_KINDS`) at one moment:
    their identity tells an update which stored ranges are unchanged since the last export."""

    def __init__(self, store: Store, kind: Kind, sid: str, tf: Timeframe, journal: bool) -> None:
        self._store = store
        self._kind = kind
        self._sid = sid
        self._tf = tf
        series = store.kind_series(kind, sid, tf)
        self._dir = str(series.directory)
        # May the journal hold rows of the series? (`store.journal_pending()`, asked once per
        # export: a journal file written after that is in the next export's listing, and makes
        # every month it touches differ from what this one remembers.)
        self._journal = journal
        self._parts = list_partitions(series.directory, series.period)  # oldest first
        self._stats: dict[str, FileSig | None] = {}
        self._spans: list[JournalSpan] | None = None  # the series' journal files, when asked

    def sig(self, start: int, end: int) -> Sig | None:
        """The identity of the files holding stored times [start, end), None if one is gone.
        (A compaction after the listing changes the partitions' identity: the next export
        reads those months again.)"""
        names = [f"{self._dir}/{p.filename}" for p in overlapping(self._parts, start, end)]
        if self._journal:
            if self._spans is None:
                self._spans = self._store.journal_spans(self._kind, self._sid, self._tf)
            # (The journal's files never change: their names identify their content.)
            names += [str(s.path) for s in self._spans if s.overlaps(start, end)]
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
