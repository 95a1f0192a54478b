"""The start-up repair of a whole dataset (`Store.recover`), run by a writing command under the
data dir's lock: the one place that deletes temp files and moves unreadable files aside (reads
never do), and that records where series written by older versions start."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from okx_collector.store.atomic import file_sig, move_aside
from okx_collector.store.journal import journal_root, list_journal
from okx_collector.store.layout import list_partitions
from okx_collector.store.meta import lost_starts, read_first, record_first
from okx_collector.store.migrate import migrate_all
from okx_collector.store.recovery import RecoveryNote, check_readable, remove_stale_temps
from okx_collector.store.schema import ALL_KINDS, CANDLES
from okx_collector.store.series import Series, SeriesIO


def recover_dataset(
    data_dir: Path,
    io: SeriesIO,
    series_dirs: Callable[[], Iterable[Series]],
    deep: bool,
) -> list[RecoveryNote]:
    """`Store.recover`: journal files, then every series directory (`series_dirs()`), then
    files of older layouts folded into the current one; what was deleted or moved."""
    notes: list[RecoveryNote] = []
    for kind in ALL_KINDS:
        notes.extend(remove_stale_temps(journal_root(data_dir) / kind.name))
        for path in list_journal(data_dir, kind.name):
            reason = check_readable(path, kind.schema, deep)
            if reason is not None:
                moved = move_aside(path)
                if moved is not None:
                    notes.append(RecoveryNote(path, "moved_aside", reason, moved))
    for series in series_dirs():
        notes.extend(remove_stale_temps(series.directory))
        if series.kind is CANDLES and read_first(series.directory) is None:
            _record_legacy_first(io, series)
        notes.extend(io.fold_legacy(series))  # month or hour files of day series
        for part in list_partitions(series.directory, series.period):
            path = series.path(part)
            reason = check_readable(path, series.kind.schema, deep)
            if reason is not None:
                note = io.quarantine(series, path, reason, file_sig(path))
                if note is not None:
                    notes.append(note)
    # After the checks (an unreadable day file was moved aside and its span recorded):
    migrate_all(io, series_dirs(), str(data_dir))
    return notes


def _record_legacy_first(io: SeriesIO, series: Series) -> None:
    """A series written before starts were recorded: record where it starts now, before a
    damaged first partition is moved aside (its span counts: its rows cannot be read)."""
    parts = list_partitions(series.directory, series.period)
    starts = lost_starts(series.directory, series.period)
    for part in parts:
        if check_readable(series.path(part), series.kind.schema, deep=False) is not None:
            starts.append(part.start)
            continue
        value = io.edge(series, newest=False)
        if value is not None:
            starts.append(value)
        break
    if starts:
        with io.locked(series):
            record_first(series.directory, min(starts))
