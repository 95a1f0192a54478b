"""Reads of a series as partitions plus journal, by the precedence rule (docs/storage.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from okx_collector.store.journal import JournalReader, JournalSpan, JournalVanished, SeriesKey
from okx_collector.store.merge import dedupe_last, dedupe_runs, key_array
from okx_collector.store.recovery import RecoveryNote
from okx_collector.store.schema import Kind
from okx_collector.store.series import Series, SeriesIO

READ_TRIES = 5  # reads of a series raced by a compaction before settling for the last one


class UnionReader:
    """Partitions (through `SeriesIO`) and journal files (through `JournalReader`) as one."""

    def __init__(self, io: SeriesIO, journal: JournalReader) -> None:
        self._io = io
        self._journal = journal

    def read(
        self,
        series: Series,
        key: SeriesKey,
        start: int | None,
        end: int | None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """The series' rows in [start, end): partitions plus journal, the journal winning by the
        rule in `compact`. The journal is listed and read before the partitions and listed
        again after: if a compaction moved rows meanwhile, the read is done again."""
        kind = series.kind
        reader = self._journal
        cols = (
            None if columns is None else [c for c in kind.schema.names if c in {*columns, kind.key}]
        )
        parts = journal = None
        for _ in range(READ_TRIES):
            files = reader.files(kind.name)
            problems: list[tuple[Path, str]] = []
            try:
                journal = reader.series_rows(kind, key, files, start, end, problems)
            except JournalVanished:
                continue
            parts = self._io.read_range(series, start, end, cols)
            if reader.files(kind.name) == files:
                break
        for path, reason in problems:
            self._io.note(RecoveryNote(path, "unreadable", reason))
        if parts is None:
            parts = self._io.read_range(series, start, end, cols)
        out = parts
        rows = [t if cols is None else t.select(cols) for t in journal or [] if t.num_rows]
        if rows:
            # Only the partitions' rows from the journal's oldest key on can meet a journal row:
            # the rule is applied to them alone, and the rows before are kept as they are (a
            # year's 518,000 rows re-sorted for a journal's few cost ~17 ms).
            lowest = min(int(key_array(t, kind.key).min()) for t in rows)
            cut = int(np.searchsorted(key_array(parts, kind.key), lowest, side="left"))
            both = pa.concat_tables([parts.slice(cut), *rows])
            # (some columns: keys only, the union; whole rows: the precedence rule)
            tail = dedupe_runs(both, kind) if cols is None else dedupe_last(both, kind.key)
            out = pa.concat_tables([parts.slice(0, cut), tail.combine_chunks()])
        return out if columns is None else out.select(columns)

    def _journal_edge(self, kind: Kind, key: SeriesKey, newest: bool) -> int | None:
        spans = self.journal_spans(kind, key)
        if not spans:
            return None
        return max(s.last for s in spans) if newest else min(s.first for s in spans)

    def edge(self, series: Series, key: SeriesKey, newest: bool) -> int | None:
        # The journal first: a compaction that empties it meanwhile has filled the partitions
        # (so a file it merged, gone from the journal's index, is read there).
        journal = self._journal_edge(series.kind, key, newest)
        stored = self._io.edge(series, newest=newest)
        found = [v for v in (journal, stored) if v is not None]
        if not found:
            return None
        return max(found) if newest else min(found)

    def journal_spans(self, kind: Kind, key: SeriesKey) -> list[JournalSpan]:
        """The journal files holding rows of the series, each with their key range, oldest
        first (as listed now: the files never change, so a name identifies its content)."""
        return self._journal.spans(kind, key, self._journal.files(kind.name))

    def journal_series(self, kind: Kind) -> set[SeriesKey]:
        """Every series with rows in the journal."""
        return self._journal.series_keys(kind, self._journal.files(kind.name))
