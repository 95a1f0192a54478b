"""The partition engine behind `Store`: locked read-merge-write of one series' partition files,
with the live day of a 1m/3m/5m series in hour files (see `layout`)."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.fsutil import fsync_dir
from okx_collector.store.arrow import BoolArray, empty_table
from okx_collector.store.atomic import storage_error, write_atomic, write_temp
from okx_collector.store.cache import FileSig, TableCache, file_sig
from okx_collector.store.layout import (
    Partition,
    Period,
    hour_partition,
    is_hour,
    list_partitions,
    partition_of,
)
from okx_collector.store.merge import dedupe_last, key_array, merge, merge_collapsed
from okx_collector.store.meta import read_first, record_first
from okx_collector.store.reader import Series, SeriesReader
from okx_collector.store.recovery import RecoveryNote

__all__ = ["Series", "SeriesIO"]


def _is_open(part: Partition) -> bool:
    """Whether the partition's span has not ended yet (by this machine's clock): it will be
    rewritten at every close until it does, so it is compressed for speed (snappy: a 1m day file
    in 0.22 ms instead of 0.41 ms); a partition that has ended is compressed for size (zstd)."""
    return part.end > time.time() * 1000


@dataclass
class _Staged:
    """A partition written to its temp file, waiting for the group commit."""

    series: Series
    path: Path
    tmp: Path
    merged: pa.Table
    count: int
    removes: tuple[Path, ...]  # hour files merged into this day file: deleted once it is in place
    replaced: bool = False


class SeriesIO(SeriesReader):
    """Reads and writes partitions of any series, sharing locks, cache and notes."""

    def __init__(self, cache: TableCache) -> None:
        super().__init__(cache)
        # Live days in hour files: the day each series last wrote hours in, the series whose
        # ended days may still have hour files to merge, and each day file's newest key.
        self._hour_day: dict[Path, int] = {}
        self._pending: dict[Path, Series] = {}
        self._day_max: dict[Path, tuple[Path, FileSig, int | None]] = {}
        self._merged = 0  # days merged since the pending set was last empty
        self._days_lock = threading.Lock()  # guards the four above
        self._firsts: dict[Path, int] = {}  # recorded first open time per series (see `meta`)

    def split_month_files(self, series: Series) -> list[RecoveryNote]:
        """Month files in a day-partitioned series (written before 1m/3m/5m candles and live
        funding moved to day files): their rows are merged into day files, then the month file
        is removed. Interrupted, it is redone at the next start; the merge makes that harmless."""
        notes = []
        months = Series(series.directory, series.kind, Period.MONTH, series.label)
        for part in list_partitions(series.directory, Period.MONTH):
            path = months.path(part)
            table = self.read_partition(months, part)  # moves an unreadable one aside
            if table is None:
                continue
            self.write(series, table)
            with self.locked(series):
                try:
                    path.unlink()
                    fsync_dir(series.directory)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise storage_error(path, "remove", exc) from exc
            notes.append(RecoveryNote(path, "split", f"{table.num_rows} rows"))
        return notes

    def prime(self, series: Series) -> None:
        """Decode the newest partition into the cache (the one the next live write rewrites)."""
        parts = list_partitions(series.directory, series.period)
        if parts:
            self.read_partition(series, parts[-1], cache=True)

    # -- writing -----------------------------------------------------------------------------

    def merge_in(self, series: Series, rows: pa.Table, whole: BoolArray) -> int:
        """Merge a compaction's rows of one series (`merge.collapse`d: sorted, unique, with
        their `whole` flags) into its partitions by the precedence rule; each changed partition
        is replaced atomically and is durable on return. Re-merging rows that are already
        stored changes nothing and rewrites nothing. Returns the files rewritten."""
        key = series.kind.key
        keys = key_array(rows, key)
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
                write_atomic(series.path(part), merged.combine_chunks(), hot=_is_open(part))
                self._cache.invalidate(series.directory)
                rewritten += 1
        return rewritten

    def _note_first(self, series: Series, first: int) -> None:
        """Record the series' first open time if `first` is older (see `meta`); the caller
        holds the lock. Known values are remembered: a live round asks for every series."""
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

    def write(self, series: Series, batch: pa.Table) -> int:
        """Merge a validated batch into its partitions; rows added or changed."""
        with self.locked(series):
            return sum(
                self._write_partition(series, part, rows)
                for part, rows in self._split(series, batch, hours=False)
            )

    def write_many(self, items: Sequence[tuple[Series, pa.Table]], *, hours: bool) -> int:
        """`write` for many series with one group commit; rows added or changed.

        Every changed partition is written to its temp file, one `os.sync()` makes them all
        durable, they replace their targets, and one more sync makes the renames durable. N files
        cost two syncs instead of 2N fsyncs, which is what lets a live job store the candles of a
        thousand series that close in the same second within about a second. `hours`: a live
        write, whose newest day goes to hour files (see `_split`).
        """
        series_of: dict[Path, Series] = {}
        batches: dict[Path, list[pa.Table]] = {}  # a series given twice is written once
        for series, batch in items:
            series_of[series.directory] = series
            batches.setdefault(series.directory, []).append(batch)
        staged: list[_Staged] = []
        failing = items[0][0].directory if items else Path()  # named by an OS error's message
        with contextlib.ExitStack() as locks:
            for directory in sorted(series_of):  # one lock order, no deadlock
                locks.enter_context(self.locked(series_of[directory]))
            try:
                for directory, tables in batches.items():
                    series = series_of[directory]
                    batch = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
                    for part, rows in self._split(series, batch, hours=hours):
                        entry = self._stage(series, part, rows)
                        if entry is not None:
                            staged.append(entry)
                if staged:
                    os.sync()
                for entry in staged:
                    failing = entry.path
                    entry.tmp.replace(entry.path)
                    entry.replaced = True
                    self._cache.put(entry.series.directory, entry.path, file_sig(entry.path),
                                    entry.merged)  # fmt: skip
                for entry in staged:
                    for path in entry.removes:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                if staged:
                    os.sync()
            except OSError as exc:
                raise storage_error(failing, "write", exc) from exc
            finally:
                for entry in staged:  # not replaced: a failure part-way
                    if not entry.replaced:
                        with contextlib.suppress(OSError):
                            entry.tmp.unlink()
        return sum(entry.count for entry in staged)

    def _split(
        self, series: Series, batch: pa.Table, *, hours: bool
    ) -> list[tuple[Partition, pa.Table]]:
        """The batch, deduplicated, cut at partition boundaries (caller holds the lock).

        With `hours`, the rows of the batch's newest day go to that day's hour files when they
        are all newer than its day file (so that no row is in both); a live close then rewrites
        at most an hour of rows. Older days go to their day files.
        """
        if batch.num_rows == 0:
            return []
        key = series.kind.key
        keys = key_array(batch, key)
        if keys.size > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            batch = dedupe_last(batch, key)
            keys = key_array(batch, key)
        out = _cut(batch, keys, lambda ts: partition_of(ts, series.period))
        if hours and series.period is Period.DAY:
            day, rows = out[-1]
            first = keys.size - rows.num_rows
            newest = self._day_file_max(series, day)
            if newest is None or int(keys[first]) > newest:
                out[-1:] = _cut(rows, keys[first:], hour_partition)
                self._entered(series, day)
        return out

    def _stage(self, series: Series, part: Partition, rows: pa.Table) -> _Staged | None:
        """Merge one partition's rows and write the result to a temp file (not yet synced)."""
        existing, removes = self._existing(series, part, cache=True)
        merged, count = merge(existing, rows, series.kind)
        if merged is None:
            return None
        path = series.path(part)
        tmp = write_temp(path, merged, sync=False, hot=_is_open(part))
        return _Staged(series, path, tmp, merged, count, removes)

    def _write_partition(
        self, series: Series, part: Partition, rows: pa.Table, compact: bool = False
    ) -> int:
        """Merge `rows` into one partition (caller holds the lock); `compact`: rewrite a day
        file with its hour files even if `rows` adds nothing, and leave the cache alone."""
        path = series.path(part)
        existing, removes = self._existing(series, part, cache=not compact)
        merged, count = merge(existing, rows, series.kind)
        if merged is None:
            if not (compact and removes):
                return 0
            merged = existing
        write_atomic(path, merged, hot=_is_open(part))
        if removes:
            for hour in removes:
                with contextlib.suppress(FileNotFoundError):
                    hour.unlink()
            fsync_dir(series.directory)
        if not compact:
            self._cache.put(series.directory, path, file_sig(path), merged)
        return count

    def _existing(
        self, series: Series, part: Partition, cache: bool
    ) -> tuple[pa.Table, tuple[Path, ...]]:
        """What a write into `part` merges with (caller holds the lock): the partition's rows,
        with, for a day file, those of its hour files (which the write then replaces: returned
        so that they are removed once the day file is in place)."""
        found = self.read_partition(series, part, locked=True, cache=cache)
        hours: list[Partition] = []
        if series.period is Period.DAY and not is_hour(part):
            parts = list_partitions(series.directory, Period.DAY)
            hours = [h for h in parts if is_hour(h) and part.start <= h.start < part.end]
        tables = [found] if found is not None else []
        for hour in hours:
            table = self.read_partition(series, hour, locked=True)  # None: gone or moved aside
            if table is not None:
                tables.append(table)
        removes = tuple(series.path(h) for h in hours)
        if not tables:
            return empty_table(series.kind.schema), removes
        if len(tables) == 1:
            return tables[0], removes
        merged = dedupe_last(pa.concat_tables(tables), series.kind.key)
        return merged.combine_chunks(), removes

    # -- live days in hour files ---------------------------------------------------------------

    def _day_file_max(self, series: Series, day: Partition) -> int | None:
        """The newest key in `day`'s day file (None if there is none), remembered per file
        identity: a live close asks it of every series."""
        path = series.path(day)
        sig = file_sig(path)
        if sig is None:
            return None
        with self._days_lock:
            known = self._day_max.get(series.directory)
        if known is not None and known[0] == path and known[1] == sig:
            return known[2]
        newest = self._partition_edge(series, day, newest=True, locked=True)
        with self._days_lock:
            self._day_max[series.directory] = (path, sig, newest)
        return newest

    def _entered(self, series: Series, day: Partition) -> None:
        """Note a live write into `day`'s hour files: when the series moves to a new day (or
        first writes after a start), an ended day's hour files may be waiting to be merged."""
        with self._days_lock:
            if self._hour_day.get(series.directory) != day.start:
                self._hour_day[series.directory] = day.start
                self._pending[series.directory] = series

    def compact_pending(self, limit: int) -> int:
        """Merge ended days' hour files for up to `limit` of the series waiting for it (see
        `_entered`); how many still wait. A live writer calls this while it is idle."""
        with self._days_lock:
            batch = [self._pending.pop(d) for d in list(itertools.islice(self._pending, limit))]
        merged = sum(self.compact_ended(series) for series in batch)
        with self._days_lock:
            left = len(self._pending)
            self._merged += merged
            finished = self._merged > 0 and not left
            if not left:
                self._merged = 0
        if finished:  # the day's merges are done: flush what they left to the disk now, in
            # idle time, rather than in the next close's group commit (whose sync would wait for
            # 24,000 unlinked hour files' metadata). (Their freed pages: the writer's give-back.)
            os.sync()
        return left

    def compact_ended(self, series: Series) -> int:
        """Merge the hour files of every day before the series' newest one into their day files
        (each day file replaced, then its hour files removed); the number of days merged."""
        if series.period is not Period.DAY:
            return 0
        with self.locked(series):
            parts = list_partitions(series.directory, Period.DAY)
            if not parts:
                return 0
            newest = partition_of(parts[-1].start, Period.DAY)
            ended = sorted(
                {partition_of(p.start, Period.DAY) for p in parts if is_hour(p)} - {newest}
            )
            for day in ended:
                self._write_partition(series, day, empty_table(series.kind.schema), compact=True)
            return len(ended)


def _partitions(keys: npt.NDArray[np.int64], period: Period) -> list[Partition]:
    """The partitions holding sorted `keys`, in order."""
    out = []
    lo = 0
    while lo < keys.size:
        part = partition_of(int(keys[lo]), period)
        out.append(part)
        lo = int(np.searchsorted(keys, part.end, side="left"))
    return out


def _cut(
    batch: pa.Table, keys: npt.NDArray[np.int64], part_of: Callable[[int], Partition]
) -> list[tuple[Partition, pa.Table]]:
    """`batch` (sorted by `keys`) cut where `part_of` changes: (partition, its rows) in order."""
    out = []
    lo = 0
    while lo < keys.size:
        part = part_of(int(keys[lo]))
        hi = int(np.searchsorted(keys, part.end, side="left"))
        out.append((part, batch.slice(lo, hi - lo)))
        lo = hi
    return out
