"""Exporting one instrument of one timeframe in full, streamed (`update` adds the in-place update).

A full export reads the store in runs of whole UTC months of at most `CHUNK_BARS` bars (a month of
1m, a year of 15m), so memory is bounded whatever the history's length and a short timeframe does
not pay a read per month. It remembers what it read (`sources`): the identity of each month's
files, and for the newest month its state up to the UTC day of the last candle, from which an
update goes on. A bar's place in a feature file is explicit: the value of the bar opening at `ts`
is at byte `4 * (1 + (ts - first) / step)`, whatever came before it; the header (value 0) is the
calendar slot of `first`. So an incremental export can write any run of slots where it belongs,
padding missing bars with NaN, and the result is the same bytes as a full export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from okx_collector.qlib_export.arrays import (
    CANDLE_FIELDS,
    FIELDS,
    FUNDING_FIELD,
    Candles,
    Funding,
    MonthAcc,
    MonthSummary,
    bar_block,
    funding_block,
    total_gaps,
)
from okx_collector.qlib_export.calendar import Month, months_between
from okx_collector.qlib_export.files import (
    VALUE_BYTES,
    StreamedFile,
    header,
    make_dirs,
    remove,
    remove_stale_temps,
)
from okx_collector.qlib_export.listing import Listing
from okx_collector.qlib_export.manifest import (
    FileEntry,
    FundingEntry,
    InstrumentEntry,
    feature_path,
)
from okx_collector.qlib_export.sources import SourceCache
from okx_collector.qlib_export.syncer import Syncer
from okx_collector.store.arrow import to_float64, to_int64
from okx_collector.store.schema import CANDLES
from okx_collector.store.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe

READ_COLUMNS = ["ts", *CANDLE_FIELDS]  # what an export reads (`source` is never decoded)

FUNDING_CHUNK = 1 << 18  # slots per block when a funding file is rewritten on its own
CHUNK_BARS = 1 << 16  # bars read at once by a full export, in whole months (at least one)

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
class Change:
    """What an update found for one month."""

    summary: MonthSummary | None  # the month's new summary
    start: int  # the first bar to write from (the month's `hi`: none)
    candles: Candles  # the candles read, covering [start, hi) at least
    known: bool  # the summary holds for the month's files now (not skipped unread)
    prefix: dict[str, Any] | None = None  # MonthAcc state up to the day of the last candle


def day_start(ts: int) -> int:
    return ts - ts % DAY_MS


@dataclass(frozen=True, slots=True)
class Result:
    entry: InstrumentEntry
    action: Action
    slots: int  # bar slots written per candle field


class InstrumentWriter:
    """Writes the feature files of one timeframe's instruments under `out`."""

    def __init__(
        self, store: Store, out: Path, tf: Timeframe, sources: SourceCache, syncer: Syncer
    ) -> None:
        self._store = store  # read only
        self._syncer = syncer  # makes the files durable before the manifest is written
        self._journal = store.journal_pending() > 0  # (for `Listing`)
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

    def _read(self, t: Target, lo: int, hi: int) -> Candles:
        """The stored candles of [lo, hi)."""
        table = self._store.read_candles(t.inst_id, self._tf, lo, hi, columns=READ_COLUMNS)
        return Candles(
            to_int64(table.column("ts")),
            {f: to_float64(table.column(f)) for f in CANDLE_FIELDS},
        )

    def _remember(
        self, t: Target, before: Listing, changes: list[tuple[Month, int, Change]]
    ) -> None:
        """Record the months read whole, and the newest month's prefix, as unchanged sources."""
        for month, hi, change in changes:
            key = f"{t.inst_id}/{month.key}"
            if change.known and hi >= month.end:  # the whole partition (nothing after `hi`)
                sha = change.summary.sha256 if change.summary else ""
                sig = (month.start, month.end)
                self._sources.remember(key, before.sig(*sig), sha)
            if change.prefix is not None:
                day = day_start(t.last)
                sig = (month.start, day)
                self._sources.remember_prefix(key, before.sig(*sig), day, change.prefix)

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

    def _summarize(self, t: Target, month: Month, candles: Candles) -> Change:
        """A month read whole: its summary, and its prefix if it holds the last candle."""
        acc = MonthAcc(self._tf.ms)
        prefix = None
        if month.start <= t.last < month.end:
            day = day_start(t.last)
            acc.add(candles.between(month.start, day))
            prefix = acc.save()
            candles = candles.between(day, month.end)
        acc.add(candles)
        return Change(acc.summary(), month.start, Candles.empty(), True, prefix)

    def _chunks(self, t: Target) -> list[list[tuple[Month, int, int]]]:
        """The months of `t` with bars, grouped into reads of at most `CHUNK_BARS` bars."""
        chunks: list[list[tuple[Month, int, int]]] = []
        size = 0
        for month in months_between(t.first, t.last):
            lo, hi = self._slots(t, month)
            if hi <= lo:
                continue
            bars = (hi - lo) // self._tf.ms
            if not chunks or size + bars > CHUNK_BARS:
                chunks.append([])
                size = 0
            chunks[-1].append((month, lo, hi))
            size += bars
        return chunks

    # -- full ----------------------------------------------------------------------------------

    def full(self, t: Target) -> Result:
        """Write every file of `t` afresh: streamed to temp files that replace the old ones."""
        step = self._tf.ms
        directory = self._out / self._rel(t.inst_id, "x").rsplit("/", 1)[0]
        make_dirs(directory)
        remove_stale_temps(directory)
        fields = [*FIELDS, FUNDING_FIELD] if t.funding is not None else list(FIELDS)
        size = VALUE_BYTES * (1 + t.bars(step))
        writers: dict[str, StreamedFile] = {}
        months: dict[str, MonthSummary] = {}
        changes: list[tuple[Month, int, Change]] = []
        before = Listing(self._store, CANDLES, t.inst_id, self._tf, self._journal)
        try:
            for field in fields:
                writers[field] = StreamedFile(
                    self._out / self._rel(t.inst_id, field),
                    header(t.start_index),
                    size,
                    self._syncer,
                )
            for chunk in self._chunks(t):
                lo, hi = chunk[0][1], chunk[-1][2]
                candles = self._read(t, lo, hi)
                count = (hi - lo) // step
                block = bar_block(candles, lo, count, step)
                for field in FIELDS:
                    writers[field].write(block[field])
                if t.funding is not None:
                    writers[FUNDING_FIELD].write(funding_block(t.funding, lo, count, step))
                for month, mlo, mhi in chunk:
                    change = self._summarize(t, month, candles.between(mlo, mhi))
                    if change.summary is not None:
                        months[month.key] = change.summary
                    changes.append((month, mhi, change))
            files = {self._rel(t.inst_id, f): w.commit() for f, w in writers.items()}
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        for f, w in writers.items():
            self._sources.keep_point(self._rel(t.inst_id, f), w.point)
        self._remember(t, before, changes)
        if t.funding is None:
            remove(self._out / self._rel(t.inst_id, FUNDING_FIELD))
        self._syncer.folder(directory)
        return Result(self._entry(t, months, files), "rewritten", t.bars(step))

    def _write_funding(self, t: Target) -> FileEntry:
        """Rewrite the funding_rate file alone, streamed in blocks."""
        assert t.funding is not None
        step = self._tf.ms
        rel = self._rel(t.inst_id, FUNDING_FIELD)
        size = VALUE_BYTES * (1 + t.bars(step))
        writer = StreamedFile(self._out / rel, header(t.start_index), size, self._syncer)
        try:
            end = t.last + step
            for lo in range(t.first, end, FUNDING_CHUNK * step):
                count = min(FUNDING_CHUNK, (end - lo) // step)
                writer.write(funding_block(t.funding, lo, count, step))
            entry = writer.commit()
            self._sources.keep_point(rel, writer.point)
            return entry
        except BaseException:
            writer.abort()
            raise
