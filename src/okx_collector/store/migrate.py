"""The one-time move of an older layout's day and hour files into month files (`store.layout`).

Runs at the start of a writing command, under the data dir's lock, before compaction; the day
files of each series' newest month are left where compaction writes that month (`legacy_files`). One
series-month at a time (at most 44,640 rows of 1m, so the memory is bounded whatever the size
of the dataset): the month file (if any), then the day files, then the hour files of that month
are read, the later winning on a key (the order in which an older version wrote them), written as
the month file atomically (temp, fsync, rename, fsync the folder), and only then the files it
replaces are deleted. A kill at any instant leaves either the old files, or the new month file
beside some of the old ones, whose rows it holds with the same values: reads dedupe the overlap
(`SeriesReader.read_range`), and the next start finishes the move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from okx_collector.fsutil import fsync_dir
from okx_collector.store.arrow import BoolArray, empty_table
from okx_collector.store.atomic import storage_error, write_atomic
from okx_collector.store.layout import (
    Partition,
    Period,
    is_hour,
    is_month,
    list_partitions,
    partition_of,
)
from okx_collector.store.merge import dedupe_last, merge_collapsed
from okx_collector.store.reader import Series, SeriesReader

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Migration:
    """What a migration did: older files folded in, month files written, series touched."""

    files: int = 0
    months: int = 0
    series: int = 0


def legacy_files(series: Series) -> list[Partition]:
    """The day and hour files to fold at start in a month series (none in a series of another
    span): all of them but the day files of the series' newest month, which is kept in day files
    (`SeriesIO.merge_in`: compaction then rewrites a day file, not the month's), unless that
    month holds hour files (an older layout's, newer than its day files: folded, once)."""
    if series.period is not Period.MONTH:
        return []
    found = [p for p in list_partitions(series.directory, series.period) if not is_month(p)]
    if not found:
        return []
    newest = partition_of(found[-1].start, Period.MONTH)  # (a month file starts no later)
    recent = [p for p in found if newest.start <= p.start]
    if any(is_hour(p) for p in recent):
        return found
    return [p for p in found if p.start < newest.start]


def migrate_all(io: SeriesReader, all_series: Iterable[Series], where: str) -> Migration:
    """Fold every month series' day and hour files into month files; one notice line first."""
    todo = [(s, found) for s in all_series if (found := legacy_files(s))]
    done = Migration()
    if not todo:
        return done
    files = sum(len(found) for _, found in todo)
    log.info(
        "store layout: folding %d day files of %d series into month files under %s "
        "(once; reads of a year get ~10x faster; safe to interrupt)",
        files,
        len(todo),
        where,
    )
    for series, found in todo:
        done.months += migrate_series(io, series, found)
        done.files += len(found)
        done.series += 1
    return done


def migrate_series(io: SeriesReader, series: Series, found: list[Partition]) -> int:
    """Fold `found` (the series' day and hour files) into their month files; returns the month
    files written."""
    months: dict[Partition, list[Partition]] = {}
    for part in found:
        months.setdefault(partition_of(part.start, Period.MONTH), []).append(part)
    written = 0
    for month, parts in sorted(months.items()):
        with io.locked(series):
            written += fold_month(io, series, month, parts)
    return written


def fold_month(
    io: SeriesReader,
    series: Series,
    month: Partition,
    parts: list[Partition],
    rows: pa.Table | None = None,
    whole: BoolArray | None = None,
) -> int:
    """Fold `parts` (day or hour files of `month`) into the month file, the caller holding the
    series' lock: the month file, then the parts in listed order, the later winning, then a
    compaction's `rows` of the month (`merge.collapse`d, with their `whole` flags) merged in by
    the precedence rule; the month file is written atomically before the parts are deleted, so
    a crash between them leaves copies the next fold or read resolves the same way (the parts
    hold the same values, or older ones whose journal rows are still there to win), and a re-run
    is harmless. Returns the month files written (0 or 1)."""
    tables = []
    for part in [month, *parts]:  # (oldest writes first: see the module doc)
        table = io.read_partition(series, part, locked=True)  # moved aside if bad
        if table is not None and table.num_rows:
            tables.append(table)
    merged = dedupe_last(pa.concat_tables(tables), series.kind.key) if tables else None
    if rows is not None and whole is not None and rows.num_rows:
        existing = empty_table(series.kind.schema) if merged is None else merged
        merged = merge_collapsed(existing, rows, whole, series.kind)
    written = 0
    if merged is not None:
        write_atomic(series.path(month), merged.combine_chunks())
        written = 1
    for part in parts:
        path = series.path(part)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise storage_error(path, "remove", exc) from exc
    fsync_dir(series.directory)
    return written
