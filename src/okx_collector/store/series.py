"""The partition engine behind `Store`: locked read-merge-write of one series' partition files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from okx_collector.errors import StorageError
from okx_collector.fsutil import fsync_dir
from okx_collector.store.arrow import empty_table
from okx_collector.store.atomic import (
    UnreadableFile,
    make_dirs,
    move_aside,
    read_parquet,
    storage_error,
    write_atomic,
    write_temp,
)
from okx_collector.store.cache import FileSig, TableCache, file_sig
from okx_collector.store.layout import Partition, Period, list_partitions, overlapping, partition_of
from okx_collector.store.merge import dedupe_last, key_array, merge
from okx_collector.store.recovery import RecoveryNote
from okx_collector.store.schema import Kind

LOCK_FILE = ".lock"  # per series directory; hidden and not *.parquet, so readers skip it
MAX_NOTES = 1000  # notes kept until taken; older ones are dropped (they were logged by then)


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
    replaced: bool = False


@dataclass(frozen=True, slots=True)
class Series:
    """Where one series lives and what it holds."""

    directory: Path
    kind: Kind
    period: Period
    label: str  # for messages: "candles BTC-USDT 15m"

    @property
    def lock_path(self) -> str:
        return f"{self.directory}/{LOCK_FILE}"

    def path(self, part: Partition) -> Path:
        return self.directory / part.filename


class SeriesIO:
    """Reads and writes partitions of any series, sharing locks, cache and notes."""

    def __init__(self, cache: TableCache) -> None:
        self._cache = cache  # newest-used partition table per series
        self._locks: dict[Path, threading.Lock] = {}  # partition file -> its writer lock
        self._locks_guard = threading.Lock()  # guards _locks
        self._notes: deque[RecoveryNote] = deque(maxlen=MAX_NOTES)  # repairs not yet taken
        self._notes_lock = threading.Lock()  # guards _notes

    # -- notes -------------------------------------------------------------------------------

    def note(self, note: RecoveryNote) -> None:
        with self._notes_lock:
            self._notes.append(note)

    def take_notes(self) -> list[RecoveryNote]:
        with self._notes_lock:
            notes = list(self._notes)
            self._notes.clear()
        return notes

    # -- locking -----------------------------------------------------------------------------

    def _lock_for(self, path: Path) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(path)
            if lock is None:
                lock = self._locks[path] = threading.Lock()
            return lock

    @contextlib.contextmanager
    def locked(self, series: Series, path: Path) -> Iterator[None]:
        """Hold `path`'s writer lock in this process, and the series' lock across processes.

        The `flock` keeps a `backfill` and a `collect` running on one data dir from losing each
        other's rows in a read-merge-write race. (`os.open`, not `Path.open`: a live close takes
        a thousand of these, and a buffered file object costs more than the lock itself.)
        """
        with self._lock_for(path):
            lock_path = series.lock_path
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            try:
                try:
                    fd = os.open(lock_path, flags, 0o666)
                except FileNotFoundError:  # a new series: its folder does not exist yet
                    make_dirs(series.directory)
                    fd = os.open(lock_path, flags, 0o666)
            except OSError as exc:
                raise storage_error(Path(lock_path), "open lock file", exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # (closing the only descriptor releases the flock)

    # -- reading -----------------------------------------------------------------------------

    def quarantine(
        self, series: Series, path: Path, reason: str, sig: FileSig | None, locked: bool = False
    ) -> RecoveryNote | None:
        """Move an unreadable file aside unless it changed since it was found bad (`sig`)."""

        def act() -> RecoveryNote | None:
            if file_sig(path) != sig:
                return None  # replaced by a writer since it failed to read: nothing to do
            try:
                moved = move_aside(path)
            except StorageError as err:
                return RecoveryNote(path, "unreadable", f"{reason}; {err}")
            self._cache.invalidate(series.directory)
            return None if moved is None else RecoveryNote(path, "moved_aside", reason, moved)

        if locked:
            return act()
        try:
            with self.locked(series, path):
                return act()
        except StorageError as err:  # e.g. a read-only data dir: report it, read on without it
            return RecoveryNote(path, "unreadable", f"{reason}; {err}")

    def read_partition(
        self,
        series: Series,
        part: Partition,
        columns: list[str] | None = None,
        locked: bool = False,
        cache: bool = False,
    ) -> pa.Table | None:
        """One partition's rows (sorted, unique), or None if it is absent or unreadable.

        `locked`: the caller holds the partition's lock. `cache`: remember a full table read.
        """
        path = series.path(part)
        sig = file_sig(path)
        if sig is None:
            return None
        cached = self._cache.get(series.directory, path, sig)
        if cached is not None:
            return cached if columns is None else cached.select(columns)
        try:
            table = read_parquet(path, series.kind.schema, columns)
        except FileNotFoundError:
            return None
        except UnreadableFile as exc:
            note = self.quarantine(series, path, exc.reason, sig, locked)
            if note is not None:
                self.note(note)
            return None
        if series.kind.key in table.column_names:
            table = dedupe_last(table, series.kind.key)
        if cache and columns is None:
            self._cache.put(series.directory, path, sig, table)
        return table

    def read_range(
        self, series: Series, start: int | None, end: int | None, columns: list[str] | None = None
    ) -> pa.Table:
        """Rows with key in [start, end), sorted, from the overlapping partitions only."""
        schema = series.kind.schema
        wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        key = series.kind.key
        tables: list[pa.Table] = []
        for part in overlapping(list_partitions(series.directory, series.period), start, end):
            cols = None if columns is None else sorted({*columns, key}, key=schema.names.index)
            table = self.read_partition(series, part, cols)
            if table is None or table.num_rows == 0:
                continue
            keys = key_array(table, key)
            lo = 0 if start is None else int(np.searchsorted(keys, start, side="left"))
            hi = keys.size if end is None else int(np.searchsorted(keys, end, side="left"))
            if hi > lo:
                tables.append(table.slice(lo, hi - lo).select(wanted.names))
        if not tables:
            return empty_table(wanted)
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def _partition_edge(self, series: Series, part: Partition, newest: bool) -> int | None:
        """Largest (or smallest) key of one partition, from the cache or the footer statistics."""
        path = series.path(part)
        key = series.kind.key
        cached = self._cache.get(series.directory, path, file_sig(path))
        if cached is not None and cached.num_rows:
            return int(cached.column(key)[-1 if newest else 0].as_py())
        try:
            meta = pq.read_metadata(path)
            idx = meta.schema.to_arrow_schema().get_field_index(key)
            values: list[int] = []
            for rg in range(meta.num_row_groups):
                stats = meta.row_group(rg).column(idx).statistics if idx >= 0 else None
                if stats is None or not stats.has_min_max:
                    values = []
                    break
                values.append(int(stats.max if newest else stats.min))
            if values:
                return max(values) if newest else min(values)
        except FileNotFoundError:
            return None
        except (pa.ArrowException, OSError, ValueError):
            pass  # fall through to a full read of the key column, which moves it aside if bad
        table = self.read_partition(series, part, [key])
        if table is None or table.num_rows == 0:
            return None
        return int(table.column(key)[-1 if newest else 0].as_py())

    def edge(self, series: Series, newest: bool) -> int | None:
        """The newest (or oldest) key of the series, reading as few partitions as possible."""
        parts = list_partitions(series.directory, series.period)
        for part in reversed(parts) if newest else parts:
            value = self._partition_edge(series, part, newest)
            if value is not None:
                return value
        return None

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
            with self.locked(series, path):
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

    def write(self, series: Series, batch: pa.Table) -> int:
        """Merge a validated batch into its partitions; rows added or changed."""
        return sum(
            self._write_partition(series, part, rows) for part, rows in self._split(series, batch)
        )

    def _split(self, series: Series, batch: pa.Table) -> list[tuple[Partition, pa.Table]]:
        """The batch, deduplicated, cut at partition boundaries."""
        if batch.num_rows == 0:
            return []
        key = series.kind.key
        batch = dedupe_last(batch, key)
        keys = key_array(batch, key)
        out = []
        lo = 0
        while lo < keys.size:
            part = partition_of(int(keys[lo]), series.period)
            hi = int(np.searchsorted(keys, part.end, side="left"))
            out.append((part, batch.slice(lo, hi - lo)))
            lo = hi
        return out

    def write_many(self, items: Sequence[tuple[Series, pa.Table]]) -> int:
        """`write` for many series with one group commit; rows added or changed.

        Every changed partition is written to its temp file, one `os.sync()` makes them all
        durable, they replace their targets, and
        one more sync makes the renames durable. N files cost two syncs instead of 2N fsyncs,
        which is what lets a live job store the candles of a thousand series that close in the
        same second within about a second.
        """
        work = [
            (series, part, rows, series.path(part))
            for series, batch in items
            for part, rows in self._split(series, batch)
        ]
        work.sort(key=lambda w: w[3])  # one lock order, no deadlock
        staged: list[_Staged] = []
        with contextlib.ExitStack() as locks:
            held: set[Path] = set()  # series directories whose flock we hold
            for series, _, _, path in work:
                if series.directory in held:  # a second partition: one flock per series
                    locks.enter_context(self._lock_for(path))
                else:
                    locks.enter_context(self.locked(series, path))
                    held.add(series.directory)
            try:
                for item in work:
                    entry = self._stage(item)
                    if entry is not None:
                        staged.append(entry)
                if staged:
                    os.sync()
                for entry in staged:
                    entry.tmp.replace(entry.path)
                    entry.replaced = True
                    self._cache.put(entry.series.directory, entry.path, file_sig(entry.path),
                                    entry.merged)  # fmt: skip
                if staged:
                    os.sync()
            except OSError as exc:
                raise storage_error(work[0][0].directory, "write", exc) from exc
            finally:
                for entry in staged:  # not replaced: a failure part-way
                    if not entry.replaced:
                        with contextlib.suppress(OSError):
                            entry.tmp.unlink()
        return sum(entry.count for entry in staged)

    def _stage(self, work: tuple[Series, Partition, pa.Table, Path]) -> _Staged | None:
        """Merge one partition's rows and write the result to a temp file (not yet synced)."""
        series, part, rows, path = work
        existing = self.read_partition(series, part, locked=True, cache=True)
        if existing is None:
            existing = empty_table(series.kind.schema)
        merged, count = merge(existing, rows, series.kind)
        if merged is None:
            return None
        tmp = write_temp(path, merged, sync=False, hot=_is_open(part))
        return _Staged(series, path, tmp, merged, count)

    def _write_partition(self, series: Series, part: Partition, rows: pa.Table) -> int:
        path = series.path(part)
        with self.locked(series, path):
            existing = self.read_partition(series, part, locked=True, cache=True)
            if existing is None:
                existing = empty_table(series.kind.schema)
            merged, count = merge(existing, rows, series.kind)
            if merged is None:
                return 0
            write_atomic(path, merged, hot=_is_open(part))
            self._cache.put(series.directory, path, file_sig(path), merged)
            return count
