"""Compaction: the journal merged into the per-series partitions, then deleted.

The precedence rule (one rule for compaction and for reads, DESIGN.md §4):

    For one series and one key (`ts`, or `funding_time`), the row of the newest journal file
    wins over older journal files and over the partition; within one journal file the last row
    wins. Exactly as if the journal files had been merged one after another into the partition:
    a row whose values equal the row it would replace is no change, so the stored row (and its
    `source`) stays (`merge.dedupe_runs`).

A round takes the oldest journal files of a kind (a prefix in name order, bounded by files and
rows so that its memory is bounded), merges each touched series into its partitions (each
replaced atomically: `SeriesIO.stage_in` writes the new file under a temp name, with the
series locked; a chunk's temp files are then fsynced together, each before its own rename),
fsyncs the folders of all of them at once, and only then deletes those journal files. A crash at any
instant leaves the journal files in place, and the next round merges them again: harmless,
because merging a row that is already in the partition changes nothing (the rule above), and
because a round always takes a prefix, an older file is never merged over a newer one's rows.
One compaction runs at a time per data dir (a `flock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from okx_collector.fsutil import SYNC_THREADS, fsync_dir, fsync_dirs
from okx_collector.store.arrow import BoolArray, int64s
from okx_collector.store.atomic import (
    UnreadableFile,
    deferred_dir_syncs,
    make_dirs,
    read_parquet,
    storage_error,
    sync_file,
)
from okx_collector.store.journal import (
    KINDS,
    SeriesKey,
    by_series,
    journal_root,
    list_journal,
    series_codes,
)
from okx_collector.store.merge import collapse, key_array
from okx_collector.store.reader import Series
from okx_collector.store.schema import Kind

log = logging.getLogger(__name__)

ROUND_FILES = 512  # journal files merged per round at most
ROUND_ROWS = 400_000  # and rows read per round at most: bounded memory (see benchmarks/compact.py)
# Series merged at once (reading, merging and encoding release the GIL in part). Two, for a
# drain too: the fsyncs and renames wait on threads of their own (`_commit`), so more merging
# threads only contend for the interpreter on 2 cores (4,000 series: 7.1-10.6 s on 2, 7.9-12.9
# s on 4; benchmarks/README.md, "compact.py"), and a background round leaves the live process
# the interpreter lock.
WRITE_THREADS = 2
CHUNK_SERIES = 256  # series whose writes are queued at once (bounds a round's memory)
LOCK_NAME = ".compact.lock"


class Staged(Protocol):
    """A series merged but for its last file (`SeriesIO.stage_in`), its lock held: `temp`
    waits for its fsync, then `commit()` renames it into place, or `abort()` removes it; both
    release the lock."""

    @property
    def temp(self) -> Path | None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


# What a round needs from the store: the partitions of a series, and their staged merge.
SeriesOf = Callable[[Kind, SeriesKey], Series]
WritePartitions = Callable[[Series, pa.Table, BoolArray], Staged]


@dataclass
class RoundResult:
    files: int = 0  # journal files merged and deleted
    rows: int = 0  # rows read from them
    series: int = 0  # series whose partitions were merged into
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # skipped, left in place


@contextlib.contextmanager
def compaction_lock(data_dir: Path) -> Iterator[None]:
    """One compaction at a time on a data dir (threads of one process included: each call
    opens its own descriptor, and `flock`s on two descriptors exclude each other)."""
    root = journal_root(data_dir)
    make_dirs(root)
    path = root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise storage_error(path, "open lock file", exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def compact_round(
    data_dir: Path,
    kind: Kind,
    series_of: SeriesOf,
    write: WritePartitions,
    *,
    max_files: int = ROUND_FILES,
    max_rows: int = ROUND_ROWS,
    chunk_series: int = CHUNK_SERIES,
    threads: int = WRITE_THREADS,
) -> RoundResult:
    """Merge the oldest journal files of `kind` into their partitions; delete them once every
    partition they touched is durable. The caller holds `compaction_lock`."""
    result = RoundResult()
    taken: list[Path] = []
    tables: list[pa.Table] = []
    for path in list_journal(data_dir, kind.name)[:max_files]:
        if taken and result.rows >= max_rows:
            break
        try:
            table = read_parquet(path, kind.schema)
        except FileNotFoundError:
            continue
        except UnreadableFile as exc:
            # Left in place (a writing command's start-up moves it aside): the files after it
            # are newer, so merging them first cannot let an older row win.
            result.unreadable.append((path, exc.reason))
            continue
        taken.append(path)
        tables.append(table)
        result.rows += table.num_rows
    if not taken:
        return result
    out, whole, spans = _collapsed(tables, kind)  # (empties `tables`)
    dirs: set[Path] = set()  # folders of the partitions replaced: fsynced at the end

    def run(item: tuple[Series, pa.Table, BoolArray]) -> Staged:
        with deferred_dir_syncs(dirs):  # (set in the pool thread's own context)
            return write(*item)

    with (
        ThreadPoolExecutor(threads, thread_name_prefix="compact") as pool,
        ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="fsync") as syncer,
    ):
        # In chunks: a round holds the slices, futures, locks and temp files of two chunks of
        # series (one merged while the one before it is fsynced and renamed), not of all of
        # them (4,000 series at once held ~80 MB more; benchmarks/README.md, "compact.py").
        before: list[Future[Staged]] = []
        try:
            for at in range(0, len(spans), chunk_series):
                chunk = [
                    (series_of(kind, name), out.slice(lo, hi - lo), whole[lo:hi])
                    for name, lo, hi in spans[at : at + chunk_series]
                ]
                merging = [pool.submit(run, item) for item in chunk]
                done, before = before, merging
                _commit(done, syncer, dirs)
            done, before = before, []
            _commit(done, syncer, dirs)
        finally:
            _abandon(before)  # (a failed chunk: the next one's locks and temp files)
    # Every partition's new file was fsynced before its rename (`_commit`); the renames are
    # durable once their folders are, all fsynced here at once rather than one after each.
    fsync_dirs(dirs)
    for path in taken:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    fsync_dir(taken[0].parent)
    result.files = len(taken)
    result.series = len(spans)
    return result


def _abandon(futures: list[Future[Staged]]) -> None:
    """Wait for staged merges and abort every one that succeeded."""
    for future in futures:
        with contextlib.suppress(BaseException):
            future.result().abort()


def _commit(futures: list[Future[Staged]], syncer: ThreadPoolExecutor, dirs: set[Path]) -> None:
    """Wait for a chunk's staged merges, then on `syncer`'s many threads fsync each temp file
    and rename it into place, releasing its series (its folder added to `dirs`). If a merge
    failed, nothing of the chunk is renamed: the temp files are removed, the locks released,
    the failure raised."""
    staged: list[Staged] = []
    failure: BaseException | None = None
    for future in futures:
        try:
            staged.append(future.result())
        except BaseException as exc:  # (every future is waited for: each holds a lock)
            failure = failure or exc
    if failure is not None:
        for one in staged:
            one.abort()
        raise failure

    def finish(one: Staged) -> None:
        try:
            if one.temp is not None:
                sync_file(one.temp)  # (before its rename: the name holds old or whole new)
        except BaseException:
            one.abort()
            raise
        with deferred_dir_syncs(dirs):  # (set in the pool thread's own context)
            one.commit()

    for _ in syncer.map(finish, staged):
        pass  # (every one is run: each releases its lock, renamed or not)


def _collapsed(
    tables: list[pa.Table], kind: Kind
) -> tuple[pa.Table, BoolArray, list[tuple[SeriesKey, int, int]]]:
    """The rows of journal files (oldest first) collapsed by the precedence rule: one sort for
    the whole round rather than one per file and series. Returns the rows sorted by series and
    key, their `whole` flags, and each series' span of them."""
    batch = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    big = pa.concat_tables(tables).combine_chunks()
    tables.clear()  # (each copy is dropped as soon as the next exists: two at most)
    codes, names = series_codes(big)
    keys = key_array(big, kind.key)
    order = np.lexsort((batch, keys, codes))
    c, k, b = codes[order], keys[order], batch[order]
    new_key = (c[1:] != c[:-1]) | (k[1:] != k[:-1])
    last_in_batch = np.append(new_key | (b[1:] != b[:-1]), True)  # within a file: last wins
    rows_idx = order[last_in_batch]
    rows = big.take(int64s(rows_idx))
    del big
    c = codes[rows_idx]
    k = keys[rows_idx]
    group = np.cumsum(np.append(True, (c[1:] != c[:-1]) | (k[1:] != k[:-1])))
    chosen, whole = collapse(rows, group.astype(np.int64), kind.value_columns)
    out = rows.take(int64s(chosen)).combine_chunks()
    del rows
    spans = by_series(out, c[chosen], names)
    return out, whole, [(name, lo, hi) for name, (lo, hi) in spans.items()]


def compact_all(
    data_dir: Path,
    series_of: SeriesOf,
    write: WritePartitions,
    *,
    max_files: int | None = None,
    max_rows: int = ROUND_ROWS,
) -> RoundResult:
    """Rounds until the journal is empty (`max_files` None), or one round of at most
    `max_files` files per kind; the totals."""
    total = RoundResult()
    with compaction_lock(data_dir):
        for kind in KINDS.values():
            while True:
                one = compact_round(
                    data_dir, kind, series_of, write,
                    max_files=max_files or ROUND_FILES, max_rows=max_rows,
                )  # fmt: skip
                total.files += one.files
                total.rows += one.rows
                total.series += one.series
                total.unreadable.extend(one.unreadable)
                if max_files is not None or one.files == 0:
                    break
    return total


def pending_files(data_dir: Path) -> int:
    """Journal files waiting to be merged, all kinds."""
    return sum(len(list_journal(data_dir, kind)) for kind in KINDS)


class BackgroundCompactor:
    """Compaction rounds on a thread of their own while a writing command runs.

    A round starts once `min_files` journal files wait (with a live job writing one per close,
    that is right after a close: in the quiet part of the minute), or any file has waited
    `max_wait_s`. Each round is bounded (`ROUND_FILES`, `ROUND_ROWS`), so the memory is.
    `stop()` ends the thread; the caller then runs the final compaction (see `Store.compact`).
    """

    def __init__(
        self,
        compact: Callable[[int], RoundResult],
        pending: Callable[[], int],
        *,
        min_files: int = 16,
        max_wait_s: float = 300.0,
        check_s: float = 1.0,
    ) -> None:
        self._compact = compact
        self._pending = pending
        self._min_files = min_files
        self._max_wait_s = max_wait_s
        self._check_s = check_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: Exception | None = None  # the last round's error (retried next time)
        self.rounds = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="compactor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        waited = 0.0
        while not self._stop.wait(self._check_s):
            waiting = self._pending()
            waited = waited + self._check_s if waiting else 0.0
            if waiting < self._min_files and (not waiting or waited < self._max_wait_s):
                continue
            started = time.perf_counter()
            try:
                done = self._compact(ROUND_FILES)
            except Exception as exc:  # a full disk: logged once, tried again next time
                if self.failure is None or str(self.failure) != str(exc):
                    log.warning("background compaction failed (retried later): %s", exc)
                self.failure = exc
                continue
            self.failure = None
            self.rounds += 1
            waited = 0.0
            # (when it ran and for how long: a close's delay can be set against it)
            log.info(
                "background compaction: %d journal files, %d series in %.2f s",
                done.files, done.series, time.perf_counter() - started,
            )  # fmt: skip
