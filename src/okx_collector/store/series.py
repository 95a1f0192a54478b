"""The partition engine behind `Store`: a compaction's locked read-merge-replace of one series'
partition files, and the start-up folding of files older versions left in other layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.fsutil import fsync_dir
from okx_collector.store.arrow import BoolArray, empty_table
from okx_collector.store.atomic import storage_error, write_atomic
from okx_collector.store.layout import Partition, Period, is_hour, list_partitions, partition_of
from okx_collector.store.merge import key_array, merge_collapsed
from okx_collector.store.meta import read_first, record_first
from okx_collector.store.reader import Series, SeriesReader
from okx_collector.store.recovery import RecoveryNote

__all__ = ["Series", "SeriesIO"]


class SeriesIO(SeriesReader):
    """Reads and merges into partitions of any series, sharing locks and notes."""

    def __init__(self) -> None:
        super().__init__()
        self._firsts: dict[Path, int] = {}  # recorded first open time per series (see `meta`)

    def merge_in(self, series: Series, rows: pa.Table, whole: BoolArray) -> int:
        """Merge a compaction's rows of one series (`merge.collapse`d: sorted, unique, with
        their `whole` flags) into its partitions by the precedence rule; each changed partition
        is replaced atomically and is durable on return. Re-merging rows that are already
        stored changes nothing and rewrites nothing. Returns the files rewritten."""
        keys = key_array(rows, series.kind.key)
        rewritten = 0
        with self.locked(series):
            if series.kind.name == "candles" and keys.size:
                self._note_first(series, int(keys[0]))
            for part in _partitions(keys, series.period):
                lo = int(np.searchsorted(keys, part.start, side="left"))
                hi = int(np.searchsorted(keys, part.end, side="left"))
                found = self.read_partition(series, part, locked=True)
                existing = empty_table(series.kind.schema) if found is None else found
                merged = merge_collapsed(
                    existing, rows.slice(lo, hi - lo), whole[lo:hi], series.kind
                )
                if merged.num_rows == existing.num_rows and merged.equals(existing):
                    continue  # (merged before a crash: nothing to do)
                write_atomic(series.path(part), merged.combine_chunks())
                rewritten += 1
        return rewritten

    def _note_first(self, series: Series, first: int) -> None:
        """Record the series' first open time if `first` is older (see `meta`); the caller
        holds the lock. Known values are remembered: a round asks it of every series."""
        known = self._firsts.get(series.directory)
        if known is None:
            known = read_first(series.directory)
            if known is None:  # (a data dir from before the record: its stored start counts)
                stored = self.edge(series, newest=False)
                first = first if stored is None else min(first, stored)
        if known is None or first < known:
            record_first(series.directory, first)
            known = first
        self._firsts[series.directory] = known

    def fold_legacy(self, series: Series) -> list[RecoveryNote]:
        """Files an older version left in a day-partitioned series (live funding): month files
        (before day files) and hour files (the live day, by hour). (Candles went the other way:
        `store.migrate`.) Their
        rows are merged into the day files (month files first: the hour files are newer), then
        they are removed. Interrupted, it is redone at the next start; the merge makes that
        harmless."""
        if series.period is not Period.DAY:
            return []
        months = Series(series.directory, series.kind, Period.MONTH, series.label)
        found = [(months, p) for p in list_partitions(series.directory, Period.MONTH)]
        found += [(series, p) for p in list_partitions(series.directory, Period.DAY) if is_hour(p)]
        notes = []
        for owner, part in found:
            path = owner.path(part)
            with self.locked(series):
                table = self.read_partition(owner, part, locked=True)  # moved aside if bad
            if table is not None and table.num_rows:
                whole = np.ones(table.num_rows, dtype=np.bool_)
                self.merge_in(series, table, whole)
            with self.locked(series):
                try:
                    path.unlink()
                    fsync_dir(series.directory)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise storage_error(path, "remove", exc) from exc
            rows = 0 if table is None else table.num_rows
            notes.append(RecoveryNote(path, "split", f"{rows} rows"))
        return notes


def _partitions(keys: npt.NDArray[np.int64], period: Period) -> list[Partition]:
    """The partitions holding sorted `keys`, in order."""
    out = []
    lo = 0
    while lo < keys.size:
        part = partition_of(int(keys[lo]), period)
        out.append(part)
        lo = int(np.searchsorted(keys, part.end, side="left"))
    return out
