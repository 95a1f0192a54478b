"""Exporting one instrument of one timeframe: in full (streamed), or incrementally in place.

Both read the store one UTC month (one partition file) at a time, so memory is bounded by a month of
candles whatever the history's length. A bar's place in a feature file is explicit: the value of the
bar opening at `ts` is at byte `4 * (1 + (ts - first) / step)`, whatever came before it; the header
(value 0) is the calendar slot of `first`. So an incremental export can write any run of slots where
it belongs, padding missing bars with NaN, and the result is the same bytes as a full export.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from okx_collector.fsutil import fsync_dir
from okx_collector.qlib_export.arrays import (
    CANDLE_FIELDS,
    FIELDS,
    FUNDING_FIELD,
    Candles,
    Funding,
    MonthSummary,
    bar_block,
    funding_block,
    summarize,
    total_gaps,
)
from okx_collector.qlib_export.calendar import Month, month_of, months_between
from okx_collector.qlib_export.files import (
    VALUE_BYTES,
    PatchedFile,
    StreamedFile,
    file_entry,
    file_size,
    header,
    make_dirs,
    remove,
    remove_stale_temps,
)
from okx_collector.qlib_export.manifest import (
    FileEntry,
    FundingEntry,
    InstrumentEntry,
    feature_path,
)
from okx_collector.qlib_export.sources import Sig, SourceCache, files_sig
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe

READ_COLUMNS = ["ts", *CANDLE_FIELDS]  # what an export reads (`source` is never decoded)

FUNDING_CHUNK = 1 << 18  # slots per block when a funding file is rewritten on its own

Action = Literal["rewritten", "appended", "unchanged"]


@dataclass(frozen=True, slots=True)
class Target:
    """What one instrument's files must hold after this export."""

    inst_id: str
    first: int  # open time of its first candle
    last: int  # open time of its last candle
    start_index: int  # calendar slot of `first`
    funding: Funding | None  # settled funding to align, None for no funding_rate file
    funding_source: str | None  # the perpetual the funding comes from

    def bars(self, step: int) -> int:
        return (self.last - self.first) // step + 1


@dataclass(frozen=True, slots=True)
class Result:
    entry: InstrumentEntry
    action: Action
    slots: int  # bar slots written per candle field


class InstrumentWriter:
    """Writes the feature files of one timeframe's instruments under `out`."""

    def __init__(self, store: Store, out: Path, tf: Timeframe, sources: SourceCache) -> None:
        self._store = store  # read only
        self._out = out  # the export directory
        self._tf = tf
        self._sources = sources  # partitions known unchanged since the last export

    # -- helpers -------------------------------------------------------------------------------

    def _rel(self, inst_id: str, field: str) -> str:
        return feature_path(inst_id, field, self._tf.qlib_freq)

    def _slots(self, t: Target, month: Month) -> tuple[int, int]:
        """The bars of `month` inside [first, last]: [lo, hi) as open times."""
        lo = max(self._tf.ceil(month.start), t.first)
        hi = min(self._tf.ceil(month.end), t.last + self._tf.ms)
        return lo, hi

    def _month_sig(self, t: Target, month: Month) -> tuple[str, Sig | None]:
        """The month's key in the source cache, and the identity of the files holding it now."""
        paths = self._store.candle_partition_files(t.inst_id, self._tf, month.start, month.end)
        key = f"{t.inst_id}/{month.key}"
        return key, files_sig(paths)

    def _read(self, t: Target, month: Month, lo: int, hi: int) -> Candles:
        """The stored candles of [lo, hi) in `month`; remembers the month if read whole."""
        key, before = self._month_sig(t, month)
        table = self._store.read_candles(t.inst_id, self._tf, lo, hi, columns=READ_COLUMNS)
        after = self._month_sig(t, month)[1]
        candles = Candles(
            np.asarray(table.column("ts").to_numpy(), dtype=np.int64),
            {f: np.asarray(table.column(f).to_numpy(), dtype=np.float64) for f in CANDLE_FIELDS},
        )
        if hi >= month.end:  # the whole partition: nothing before `first`, nothing after `hi`
            summary = summarize(candles, self._tf.ms)
            self._sources.remember(key, before, after, summary.sha256 if summary else "")
        return candles

    def _unchanged(self, t: Target, month: Month, summary: MonthSummary | None) -> bool:
        key, now = self._month_sig(t, month)
        return self._sources.unchanged(key, now, summary.sha256 if summary else "")

    def _entry(
        self,
        t: Target,
        months: dict[str, MonthSummary],
        files: dict[str, FileEntry],
    ) -> InstrumentEntry:
        ordered = [months[k] for k in sorted(months)]
        funding = None
        if t.funding is not None and t.funding_source is not None:
            funding = FundingEntry(
                t.funding_source,
                len(t.funding),
                int(t.funding.times[0]),
                int(t.funding.times[-1]),
                t.funding.digest(),
            )
        return InstrumentEntry(
            first=t.first,
            last=t.last,
            start_index=t.start_index,
            bars=t.bars(self._tf.ms),
            rows=sum(m.rows for m in ordered),
            gaps=total_gaps(ordered, self._tf.ms),
            months=dict(sorted(months.items())),
            funding=funding,
            files=dict(sorted(files.items())),
        )

    # -- full ----------------------------------------------------------------------------------

    def full(self, t: Target) -> Result:
        """Write every file of `t` afresh: streamed to temp files that replace the old ones."""
        step = self._tf.ms
        directory = self._out / self._rel(t.inst_id, "x").rsplit("/", 1)[0]
        make_dirs(directory)
        remove_stale_temps(directory)
        fields = [*FIELDS, FUNDING_FIELD] if t.funding is not None else list(FIELDS)
        writers: dict[str, StreamedFile] = {}
        months: dict[str, MonthSummary] = {}
        try:
            for field in fields:
                writers[field] = StreamedFile(
                    self._out / self._rel(t.inst_id, field), header(t.start_index)
                )
            for month in months_between(t.first, t.last):
                lo, hi = self._slots(t, month)
                if hi <= lo:
                    continue
                candles = self._read(t, month, lo, hi)
                count = (hi - lo) // step
                block = bar_block(candles, lo, count, step)
                for field in FIELDS:
                    writers[field].write(block[field])
                if t.funding is not None:
                    writers[FUNDING_FIELD].write(funding_block(t.funding, lo, count, step))
                summary = summarize(candles, step)
                if summary is not None:
                    months[month.key] = summary
            files = {self._rel(t.inst_id, f): w.commit() for f, w in writers.items()}
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        if t.funding is None:
            remove(self._out / self._rel(t.inst_id, FUNDING_FIELD))
        fsync_dir(directory)
        return Result(self._entry(t, months, files), "rewritten", t.bars(step))

    # -- incremental ---------------------------------------------------------------------------

    def _reusable(self, t: Target, old: InstrumentEntry) -> bool:
        """Can `old`'s files be updated in place into `t`'s? (Else: rewrite in full.)"""
        if old.first != t.first or t.last < old.last:
            return False  # history grew backwards or shrank: every offset moves
        size = VALUE_BYTES * (1 + old.bars)
        expected = {self._rel(t.inst_id, f) for f in FIELDS}
        if old.funding is not None:
            expected.add(self._rel(t.inst_id, FUNDING_FIELD))
        if set(old.files) != expected:
            return False
        return all(
            e.bytes == size and file_size(self._out / rel) == size for rel, e in old.files.items()
        )

    def update(self, t: Target, old: InstrumentEntry) -> Result | None:
        """Bring `old`'s files up to `t` in place; None if that is not possible."""
        if not self._reusable(t, old):
            return None
        step = self._tf.ms
        months: dict[str, MonthSummary] = {}
        slots = 0
        header = t.start_index if t.start_index != old.start_index else None
        with _Patcher(self._out, t, step, header, self._rel) as patcher:
            for month in months_between(t.first, t.last):
                lo, hi = self._slots(t, month)
                if hi <= lo:
                    continue
                summary, start, candles = self._month_change(t, old, month, lo, hi)
                if summary is not None:
                    months[month.key] = summary
                if start < hi:
                    count = (hi - start) // step
                    block = bar_block(candles.between(start, hi), start, count, step)
                    for field in FIELDS:
                        patcher.get(field).write_at(start, block[field])
                    slots += count
            if header is not None:
                for field in FIELDS:
                    patcher.get(field)
            rewritten_funding = self._update_funding(t, old, patcher)
        files = {self._rel(t.inst_id, f): old.files[self._rel(t.inst_id, f)] for f in FIELDS}
        funding_rel = self._rel(t.inst_id, FUNDING_FIELD)
        if t.funding is not None and old.funding is not None:
            files[funding_rel] = old.files[funding_rel]
        for field, f in patcher.opened.items():
            files[self._rel(t.inst_id, field)] = file_entry(f.path)
        if rewritten_funding is not None:
            files[funding_rel] = rewritten_funding
        changed = (
            patcher.opened or rewritten_funding or (old.funding is None) != (t.funding is None)
        )
        return Result(self._entry(t, months, files), "appended" if changed else "unchanged", slots)

    def _month_change(
        self, t: Target, old: InstrumentEntry, month: Month, lo: int, hi: int
    ) -> tuple[MonthSummary | None, int, Candles]:
        """A month's new summary, the first bar to write from (`hi`: none), and its candles.

        Months before the last exported one are skipped unread when their partition is known
        unchanged, else rewritten whole if their checksum changed. The last exported month is
        appended to after the last exported bar if its candles up to there are unchanged; any
        later month is new.
        """
        step = self._tf.ms
        before = old.months.get(month.key)
        last_old_month = month_of(old.last)
        if month < last_old_month and self._unchanged(t, month, before):
            return before, hi, Candles.empty()
        candles = self._read(t, month, lo, hi)
        summary = summarize(candles, step)
        if month < last_old_month:
            return summary, hi if summary == before else lo, candles
        if month == last_old_month:
            kept = summarize(candles.between(lo, old.last + step), step)
            return summary, old.last + step if kept == before else lo, candles
        return summary, lo, candles

    def _update_funding(
        self, t: Target, old: InstrumentEntry, patcher: _Patcher
    ) -> FileEntry | None:
        """Update the funding_rate file; returns its entry if it was rewritten whole."""
        step = self._tf.ms
        path = self._out / self._rel(t.inst_id, FUNDING_FIELD)
        if t.funding is None:
            remove(path)
            return None
        prev = old.funding
        if (
            prev is None
            or prev.source != t.funding_source
            or len(t.funding) < prev.rows
            or t.funding.digest(prev.rows) != prev.sha256
        ):
            return self._write_funding(t)
        start = old.last + step  # same settlements as before: only the new bars need a rate
        if len(t.funding) > prev.rows:
            # New settlements change the rate in force from the previous last one on.
            start = min(start, max(t.first, self._tf.ceil(prev.last)))
        if start <= t.last:
            count = (t.last + step - start) // step
            patcher.get(FUNDING_FIELD).write_at(start, funding_block(t.funding, start, count, step))
        elif patcher.header is not None:
            patcher.get(FUNDING_FIELD)
        return None

    def _write_funding(self, t: Target) -> FileEntry:
        """Rewrite the funding_rate file alone, streamed in blocks."""
        assert t.funding is not None
        step = self._tf.ms
        writer = StreamedFile(
            self._out / self._rel(t.inst_id, FUNDING_FIELD), header(t.start_index)
        )
        try:
            end = t.last + step
            for lo in range(t.first, end, FUNDING_CHUNK * step):
                count = min(FUNDING_CHUNK, (end - lo) // step)
                writer.write(funding_block(t.funding, lo, count, step))
            return writer.commit()
        except BaseException:
            writer.abort()
            raise


class _Patcher:
    """Opens an instrument's feature files for patching on first use: resized, header set."""

    def __init__(
        self,
        out: Path,
        t: Target,
        step: int,
        header: int | None,
        rel: Callable[[str, str], str],
    ) -> None:
        self._out = out
        self._t = t
        self._step = step
        self.header = header  # new start index, None if it did not change
        self._rel = rel  # (inst_id, field) -> relative path
        self.opened: dict[str, PatchedFile] = {}  # field -> open file
        self._stack = contextlib.ExitStack()  # closes (and fsyncs) them

    def __enter__(self) -> _Patcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def get(self, field: str) -> PatchedFile:
        f = self.opened.get(field)
        if f is None:
            path = self._out / self._rel(self._t.inst_id, field)
            f = self._stack.enter_context(PatchedFile(path, self._t.first, self._step))
            self.opened[field] = f
            f.resize(self._t.bars(self._step))
            if self.header is not None:
                f.set_header(self.header)
        return f
