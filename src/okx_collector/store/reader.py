"""Finding, locking and reading one series' partition files (`SeriesIO` adds the writes)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from okx_collector.errors import StorageError
from okx_collector.store.arrow import empty_table
from okx_collector.store.atomic import (
    FileSig,
    UnreadableFile,
    file_sig,
    make_dirs,
    move_aside,
    read_parquet,
    storage_error,
)
from okx_collector.store.layout import Partition, Period, list_partitions, overlapping
from okx_collector.store.merge import dedupe_last, key_array
from okx_collector.store.recovery import RecoveryNote
from okx_collector.store.schema import Kind

LOCK_FILE = ".lock"  # per series directory; hidden and not *.parquet, so readers skip it
MAX_NOTES = 1000  # notes kept until taken; older ones are dropped (they were logged by then)


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


class SeriesReader:
    """Reads partitions of any series; holds the locks and notes its writes share."""

    def __init__(self) -> None:
        self._locks: dict[Path, threading.Lock] = {}  # series directory -> its writer lock
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

    def _lock_for(self, directory: Path) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(directory)
            if lock is None:
                lock = self._locks[directory] = threading.Lock()
            return lock

    @contextlib.contextmanager
    def locked(self, series: Series) -> Iterator[None]:
        """Hold the series' writer lock in this process, and its lock across processes.

        The `flock` keeps a `backfill` and a `collect` running on one data dir from losing each
        other's rows in a read-merge-write race. (`os.open`, not `Path.open`: a live close takes
        a thousand of these, and a buffered file object costs more than the lock itself.)
        """
        release = self.hold(series)
        try:
            yield
        finally:
            release()

    def hold(self, series: Series) -> Callable[[], None]:
        """Take the lock of `locked` without a block: returns its release (callable once, from
        any thread), for a compaction that keeps a chunk of series locked from their merge to
        their renames."""
        lock = self._lock_for(series.directory)
        lock.acquire()
        try:
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
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            lock.release()
            raise

        def release() -> None:
            try:
                os.close(fd)  # (closing the only descriptor releases the flock)
            finally:
                lock.release()

        return release

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
            return None if moved is None else RecoveryNote(path, "moved_aside", reason, moved)

        if locked:
            return act()
        try:
            with self.locked(series):
                return act()
        except StorageError as err:  # e.g. a read-only data dir: report it, read on without it
            return RecoveryNote(path, "unreadable", f"{reason}; {err}")

    def read_partition(
        self,
        series: Series,
        part: Partition,
        columns: list[str] | None = None,
        locked: bool = False,
        start: int | None = None,
        end: int | None = None,
    ) -> pa.Table | None:
        """One partition's rows (sorted, unique), or None if it is absent or unreadable.

        `locked`: the caller holds the partition's lock (a writer: an unreadable file is moved
        aside; a read only reports it). `start`/`end`: only the row groups that may hold keys in
        [start, end) are read (the rows returned may still reach outside it).
        """
        path = series.path(part)
        sig = file_sig(path)
        if sig is None:
            return None
        try:
            cut = (start is not None and start > part.start) or (end is not None and end < part.end)
            within = (series.kind.key, start, end) if cut else None
            table = read_parquet(path, series.kind.schema, columns, within)
        except FileNotFoundError:
            return None
        except UnreadableFile as exc:
            # Only a writer holding the series' lock (a compaction, under the data dir's lock)
            # moves the file aside; a read reports it and reads on without it.
            if locked:
                note = self.quarantine(series, path, exc.reason, sig, locked)
            else:
                note = RecoveryNote(path, "unreadable", exc.reason)
            if note is not None:
                self.note(note)
            return None
        if series.kind.key in table.column_names:
            table = dedupe_last(table, series.kind.key)
        return table

    def read_range(
        self, series: Series, start: int | None, end: int | None, columns: list[str] | None = None
    ) -> pa.Table:
        """Rows with key in [start, end), sorted, from the overlapping partitions only.

        The loop is what a read of a series pays per file (a year reaching the newest month
        opens ~43), so it does only what a read needs: no `stat` for a quarantine that only a
        writer does, one key array per file, and a slice only for the files at the edges."""
        schema = series.kind.schema
        wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        key = series.kind.key
        cols = None if columns is None else sorted({*columns, key}, key=schema.names.index)
        tables: list[pa.Table] = []
        # Files whose keys overlap: an older layout's, until migrated, or a fold a kill
        # interrupted. (By keys, not spans: the newest month's month file and its day files
        # have overlapping spans and disjoint keys, and a dedupe of a year costs ~1.5 ms.)
        overlap = False
        reach = None  # the largest key so far
        directory = series.directory
        for part in overlapping(list_partitions(directory, series.period), start, end):
            lo_cut = start is not None and start > part.start
            hi_cut = end is not None and end < part.end
            path = directory / part.filename
            try:
                within = (key, start, end) if lo_cut or hi_cut else None
                table = read_parquet(path, schema, cols, within)
            except FileNotFoundError:  # (replaced or folded by a compaction meanwhile: the
                continue  # union reads again if the journal changed under it)
            except UnreadableFile as exc:  # a writer moves it aside; a read reports it
                self.note(RecoveryNote(path, "unreadable", exc.reason))
                continue
            keys = key_array(table, key)
            if keys.size > 1 and not bool(np.all(keys[1:] > keys[:-1])):
                table = dedupe_last(table, key)  # (a file not written by us: sorted, unique)
                keys = key_array(table, key)
            lo = int(np.searchsorted(keys, start, side="left")) if start is not None else 0
            hi = int(np.searchsorted(keys, end, side="left")) if end is not None else keys.size
            if hi > lo:
                tables.append(table if hi - lo == keys.size else table.slice(lo, hi - lo))
                overlap = overlap or (reach is not None and int(keys[lo]) <= reach)
                reach = int(keys[hi - 1]) if reach is None else max(reach, int(keys[hi - 1]))
        if not tables:
            return empty_table(wanted)
        if len(tables) == 1:
            found = tables[0]
        elif overlap:
            found = dedupe_last(pa.concat_tables(tables), key)
        else:
            found = pa.concat_tables(tables)
        return found.select(wanted.names)

    def _partition_edge(
        self, series: Series, part: Partition, newest: bool, locked: bool = False
    ) -> int | None:
        """Largest (or smallest) key of one partition, from the footer statistics.

        `locked`: the caller holds the series' lock."""
        path = series.path(part)
        key = series.kind.key
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
        table = self.read_partition(series, part, [key], locked=locked)
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
