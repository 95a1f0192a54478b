"""The partition engine behind `Store`: a compaction's locked read-merge-replace of one series'
partition files, and the start-up folding of files older versions left in other layouts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.fsutil import fsync_dir
from okx_collector.store.arrow import BoolArray, empty_table
from okx_collector.store.atomic import (
    FileSig,
    StagedReplace,
    Staging,
    file_sig,
    storage_error,
    write_atomic,
)
from okx_collector.store.layout import (
    Partition,
    Period,
    is_hour,
    is_month,
    list_partitions,
    partition_of,
)
from okx_collector.store.merge import dedupe_last, key_array, merge_collapsed
from okx_collector.store.meta import read_first, record_first
from okx_collector.store.migrate import fold_month
from okx_collector.store.reader import Series, SeriesReader
from okx_collector.store.recovery import RecoveryNote

__all__ = ["FOLD_DAYS", "Series", "SeriesIO"]

# Finished day files of a series' newest month that a round folds into its month file (see
# `SeriesIO._fold_finished`; figures in benchmarks/README.md, "read.py").
FOLD_DAYS = 7


class SeriesIO(SeriesReader):
    """Reads and merges into partitions of any series, sharing locks and notes."""

    def __init__(self) -> None:
        super().__init__()
        self._firsts: dict[Path, int] = {}  # recorded first open time per series (see `meta`)
        # newest key of a month series, or a time in its day (see `_tiers`)
        self._newest: dict[Path, int] = {}
        self._month_edges: dict[Path, tuple[FileSig, int | None]] = {}  # see `_month_reaches`

    def merge_in(self, series: Series, rows: pa.Table, whole: BoolArray) -> int:
        """Merge a compaction's rows of one series (`merge.collapse`d: sorted, unique, with
        their `whole` flags) into its partitions by the precedence rule; each changed partition
        is replaced atomically and is durable on return (its folder's fsync left to the caller
        inside `atomic.deferred_dir_syncs`). Re-merging rows that are already
        stored changes nothing and rewrites nothing. Returns the files rewritten.

        A month series writes its newest month, and any month that already has day files, to
        day files: a round rewrites at most a day file (1,440 rows of 1m) per series, not the
        month's 44,640; once `FOLD_DAYS` finished days of the newest month wait, they are
        folded into its month file (the newest day's file stays, listed after it). A month
        that is no longer the newest has its day files folded into its month file here, in the
        round that first sees the newer month, with the round's rows of that month merged in
        (one write: rows written to new day files before the fold would be left beside it)."""
        with self.locked(series):
            return self._merge(series, rows, whole, None)

    def stage_in(self, series: Series, rows: pa.Table, whole: BoolArray) -> StagedReplace:
        """`merge_in` in two steps, for a compaction round: the series' lock is taken and the
        rows merged, except that the last file written waits as a temp file, not yet fsynced
        nor renamed (`StagedReplace.temp`; in a live round that is the only file: the day's).
        The caller fsyncs a chunk's temp files at once (`atomic.sync_files`: one journal
        commit for many files, where each fsync in turn waited for one of its own), then
        `commit()`s each (the rename; then the lock is released), or `abort()`s it. Until then
        the old file is in place and the lock keeps every other writer of the series out."""
        release = self.hold(series)
        stage = Staging()
        try:
            rewritten = self._merge(series, rows, whole, stage)
        except BaseException:
            stage.discard()
            release()
            raise
        return StagedReplace(rewritten, stage.temp, stage.final, release)

    def _merge(
        self, series: Series, rows: pa.Table, whole: BoolArray, stage: Staging | None
    ) -> int:
        """`merge_in`'s work, the caller holding the lock. With a `stage`, every write but the
        last is completed (fsync, rename) before the next step reads or lists a file."""
        keys = key_array(rows, series.kind.key)
        rewritten = 0
        flush = stage.flush if stage is not None else _nothing
        if series.kind.name == "candles" and keys.size:
            self._note_first(series, int(keys[0]))
        tiered: dict[Partition, list[Partition]] = {}  # month -> its day files
        newest = None
        if series.period is Period.MONTH:
            newest, tiered = self._tiers(series, keys)
        for part in _partitions(keys, series.period):
            flush()
            lo = int(np.searchsorted(keys, part.start, side="left"))
            hi = int(np.searchsorted(keys, part.end, side="left"))
            if part == newest:
                today = partition_of(self._newest[series.directory], Period.DAY)
                for day in _partitions(keys[lo:hi], Period.DAY):
                    flush()
                    a = int(np.searchsorted(keys, day.start, side="left"))
                    b = int(np.searchsorted(keys, day.end, side="left"))
                    day_rows, day_whole = rows.slice(a, b - a), whole[a:b]
                    if self._folded(series, part, day, today):
                        # (rare: a revised candle of a folded day) into the month file, so
                        # that no key is in two files and a glob of them stays exact
                        rewritten += self._merge_part(series, part, day_rows, day_whole, stage)
                        continue
                    rewritten += self._merge_day(series, part, day, day_rows, day_whole, stage)
                    tiered.setdefault(part, []).append(day)
            elif part in tiered:  # a past month with day files: folded, the rows merged in
                days = tiered.pop(part)
                rewritten += fold_month(
                    self, series, part, days, rows.slice(lo, hi - lo), whole[lo:hi]
                )
            else:
                rewritten += self._merge_part(
                    series, part, rows.slice(lo, hi - lo), whole[lo:hi], stage
                )
        for month, days in sorted(tiered.items()):
            if month != newest:  # (one series-month at a time: memory stays bounded)
                flush()
                rewritten += fold_month(self, series, month, days)
            else:
                rewritten += self._fold_finished(series, month, days, flush)
        return rewritten

    def _fold_finished(
        self,
        series: Series,
        month: Partition,
        days: list[Partition],
        flush: Callable[[], None] = lambda: None,
    ) -> int:
        """Fold the newest month's finished days (before the newest key's day) into its month
        file once `FOLD_DAYS` of them wait: a read of the last year then opens the month file
        and at most `FOLD_DAYS` day files, not ~30 (~0.15 ms each), while the writer rewrites
        the month so far about 4 times a month per series (~+4 % of the bytes its rounds
        write), not every round. The caller holds the lock (and `flush`es a staged write
        before the fold reads the day files)."""
        today = partition_of(self._newest[series.directory], Period.DAY)
        # (in listed order: a day before an older layout's hour files inside it, which win)
        finished = sorted(
            {d for d in days if d.end <= today.start}, key=lambda p: (p.start, -p.end)
        )
        if len(finished) < FOLD_DAYS:
            return 0
        flush()
        return fold_month(self, series, month, finished)

    def _merge_part(
        self,
        series: Series,
        part: Partition,
        rows: pa.Table,
        whole: BoolArray,
        stage: Staging | None = None,
    ) -> int:
        """Merge `rows` into the one file of `part`; returns the files rewritten (0 or 1)."""
        found = self.read_partition(series, part, locked=True)
        existing = empty_table(series.kind.schema) if found is None else found
        merged = merge_collapsed(existing, rows, whole, series.kind)
        if merged.num_rows == existing.num_rows and merged.equals(existing):
            return 0  # (merged before a crash: nothing to do)
        _write(series.path(part), merged.combine_chunks(), stage)
        return 1

    def _merge_day(
        self,
        series: Series,
        month: Partition,
        day: Partition,
        rows: pa.Table,
        whole: BoolArray,
        stage: Staging | None = None,
    ) -> int:
        """Merge `rows` into the day file `day` of a month kept in day files. The rows it is
        compared with are the day as read: the month file's rows of that day (a month file an
        older layout or a migration left), then the day file's, the later winning, so a stored
        equal row stays (with its `source`) and a re-merge rewrites nothing. The day file gets
        that whole view: it lists after the month file, so its rows always win."""
        tables = []
        if self._month_reaches(series, month, day):
            found = self.read_partition(series, month, locked=True, start=day.start, end=day.end)
            if found is not None:
                keys = key_array(found, series.kind.key)
                lo = int(np.searchsorted(keys, day.start, side="left"))
                hi = int(np.searchsorted(keys, day.end, side="left"))
                tables.append(found.slice(lo, hi - lo))
        found = self.read_partition(series, day, locked=True)
        if found is not None:
            tables.append(found)
        tables = [t for t in tables if t.num_rows]
        if not tables:
            existing = empty_table(series.kind.schema)
        elif len(tables) == 1:
            existing = tables[0]
        else:
            existing = dedupe_last(pa.concat_tables(tables), series.kind.key).combine_chunks()
        merged = merge_collapsed(existing, rows, whole, series.kind)
        if merged.num_rows == existing.num_rows and merged.equals(existing):
            return 0  # (stored already, or merged before a crash: nothing to do)
        _write(series.path(day), merged.combine_chunks(), stage)
        return 1

    def _folded(self, series: Series, month: Partition, day: Partition, today: Partition) -> bool:
        """Whether `day` of the newest month is a finished day already folded into its month
        file, with no day file of its own (a crash mid-fold leaves one: it lists after the month
        file, so the day's rows must go to it). The caller holds the lock."""
        return (
            day.end <= today.start
            and self._month_reaches(series, month, day)
            and not series.path(day).exists()
        )

    def _month_reaches(self, series: Series, month: Partition, day: Partition) -> bool:
        """Whether the month file beside the newest month's day files may hold rows of `day`.
        It holds the finished days folded so far, so a live round's day is past its newest key:
        known from its footer, read once per version of the file (a `stat` tells), not once per
        series in every round. The caller holds the lock."""
        path = series.path(month)
        sig = file_sig(path)
        if sig is None:
            return False
        known = self._month_edges.get(path)
        if known is None or known[0] != sig:
            known = (sig, self._partition_edge(series, month, newest=True, locked=True))
            self._month_edges[path] = known
        return known[1] is not None and known[1] >= day.start

    def _tiers(
        self, series: Series, keys: npt.NDArray[np.int64]
    ) -> tuple[Partition | None, dict[Partition, list[Partition]]]:
        """The newest month of a month series (the one holding the newest of the stored key and
        `keys`: remembered, as a round asks it of every series) and its months with day files
        (one listing of the folder: a round may have to fold one, and must write into them)."""
        parts = list_partitions(series.directory, Period.MONTH)
        newest = self._newest.get(series.directory)
        if newest is None and parts and not is_month(parts[-1]):
            # The last listed file, a day (or an older layout's hour) file, holds the stored
            # newest key, and its day is all that is asked of it (the month, and `today`):
            # known from the name, where a footer read cost ~0.3 ms per series in a round.
            newest = parts[-1].start
        elif newest is None:
            newest = self.edge(series, newest=True)
        if keys.size:
            newest = int(keys[-1]) if newest is None else max(newest, int(keys[-1]))
        tiered: dict[Partition, list[Partition]] = {}
        for part in parts:
            if not is_month(part):
                tiered.setdefault(partition_of(part.start, Period.MONTH), []).append(part)
        if newest is None:
            return None, tiered
        self._newest[series.directory] = newest
        return partition_of(newest, Period.MONTH), tiered

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


def _nothing() -> None:
    pass


def _write(path: Path, table: pa.Table, stage: Staging | None) -> None:
    """A partition's new content: replaced now (its folder's fsync deferrable), or staged."""
    if stage is None:
        write_atomic(path, table, deferrable=True)
    else:
        stage.write(path, table)
