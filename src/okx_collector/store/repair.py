"""The checks of `Store.recover`, one series or journal folder at a time: stale temp files
deleted, unreadable files moved aside, where an older series starts recorded first."""

from __future__ import annotations

from pathlib import Path

from okx_collector.store.atomic import file_sig, move_aside
from okx_collector.store.journal import JournalReader, journal_root
from okx_collector.store.layout import list_partitions
from okx_collector.store.meta import lost_starts, read_first, record_first
from okx_collector.store.recovery import RecoveryNote, check_readable, remove_stale_temps
from okx_collector.store.schema import ALL_KINDS, CANDLES
from okx_collector.store.series import Series, SeriesIO


def recover_journal(data_dir: Path, reader: JournalReader, deep: bool) -> list[RecoveryNote]:
    """Stale temp files of the journal deleted, unreadable journal files moved aside."""
    notes: list[RecoveryNote] = []
    for kind in ALL_KINDS:
        directory = journal_root(data_dir) / kind.name
        notes.extend(remove_stale_temps(directory))
        for path in reader.files(kind.name):
            reason = check_readable(path, kind.schema, deep)
            if reason is not None:
                moved = move_aside(path)
                if moved is not None:
                    notes.append(RecoveryNote(path, "moved_aside", reason, moved))
    return notes


def recover_series(io: SeriesIO, series: Series, deep: bool) -> list[RecoveryNote]:
    """One series directory: stale temps deleted, its start recorded (a series written before
    starts were), older layouts folded, unreadable partitions moved aside."""
    notes = remove_stale_temps(series.directory)
    if series.kind is CANDLES and read_first(series.directory) is None:
        record_legacy_first(io, series)
    notes.extend(io.fold_legacy(series))  # month or hour files of day series
    for part in list_partitions(series.directory, series.period):
        path = series.path(part)
        reason = check_readable(path, series.kind.schema, deep)
        if reason is not None:
            note = io.quarantine(series, path, reason, file_sig(path))
            if note is not None:
                notes.append(note)
    return notes


def record_legacy_first(io: SeriesIO, series: Series) -> None:
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
