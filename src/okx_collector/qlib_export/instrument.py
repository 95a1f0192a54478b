"""Exporting one instrument of one timeframe: in full (streamed), or incrementally in place.

A full export reads the store in runs of whole UTC months of at most `CHUNK_BARS` bars (a month of
1m, a year of 15m), so memory is bounded whatever the history's length and a short timeframe does
not pay a read per month. An update skips the months known unchanged (`sources`), and of the newest
one reads only from the UTC day of its last exported candle on (the month's state up to that day
is saved). Checksums of patched files resume from the state saved near their end
(`files.hash_file`). A bar's place in a feature file is explicit: the value of the
bar opening at `ts` is at byte `4 * (1 + (ts - first) / step)`, whatever came before it; the header
(value 0) is the calendar slot of `first`. So an incremental export can write any run of slots where
it belongs, padding missing bars with NaN, and the result is the same bytes as a full export.
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
    summarize,
    total_gaps,
)
from okx_collector.qlib_export.calendar import Month, month_of, months_between
from okx_collector.qlib_export.files import (
    VALUE_BYTES,
    StreamedFile,
    Syncer,
    file_size,
    hash_file,
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
from okx_collector.qlib_export.patcher import Patcher
from okx_collector.qlib_export.sources import SourceCache
from okx_collector.store.arrow import to_float64, to_int64
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
        self,
        t: Target,
        before: Listing,
        after: Listing,
        changes: list[tuple[Month, int, Change]],
    ) -> None:
        """Record the months read whole, and the newest month's prefix, as unchanged sources."""
        for month, hi, change in changes:
            key = f"{t.inst_id}/{month.key}"
            if change.known and hi >= month.end:  # the whole partition (nothing after `hi`)
                sha = change.summary.sha256 if change.summary else ""
                sig = (month.start, month.end)
                self._sources.remember(key, before.sig(*sig), after.sig(*sig), sha)
            if change.prefix is not None:
                day = day_start(t.last)
                sig = (month.start, day)
                self._sources.remember_prefix(
                    key, before.sig(*sig), after.sig(*sig), day, change.prefix
                )

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
        before = Listing(self._store, t.inst_id, self._tf)
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
        self._remember(t, before, Listing(self._store, t.inst_id, self._tf), changes)
        if t.funding is None:
            remove(self._out / self._rel(t.inst_id, FUNDING_FIELD))
        self._syncer.folder(directory)
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
        changes: list[tuple[Month, int, Change]] = []
        slots = 0
        header = t.start_index if t.start_index != old.start_index else None
        before = Listing(self._store, t.inst_id, self._tf)
        bars = t.bars(step)
        with Patcher(
            self._out, t.inst_id, t.first, step, bars, header, self._rel, self._syncer
        ) as patcher:
            for month in months_between(t.first, t.last):
                lo, hi = self._slots(t, month)
                if hi <= lo:
                    continue
                change = self._month_change(t, old, month, lo, hi, before)
                changes.append((month, hi, change))
                if change.summary is not None:
                    months[month.key] = change.summary
                start = change.start
                if start < hi:
                    count = (hi - start) // step
                    block = bar_block(change.candles.between(start, hi), start, count, step)
                    for field in FIELDS:
                        patcher.get(field).write_at(start, block[field])
                    slots += count
            if header is not None:
                for field in FIELDS:
                    patcher.get(field)
            rewritten_funding = self._update_funding(t, old, patcher)
        self._remember(t, before, Listing(self._store, t.inst_id, self._tf), changes)
        files = {self._rel(t.inst_id, f): old.files[self._rel(t.inst_id, f)] for f in FIELDS}
        funding_rel = self._rel(t.inst_id, FUNDING_FIELD)
        if t.funding is not None and old.funding is not None:
            files[funding_rel] = old.files[funding_rel]
        for field, f in patcher.opened.items():
            rel = self._rel(t.inst_id, field)
            point = self._sources.point(rel, patcher.before.get(field))
            usable = (
                point if point is not None and f.low is not None and point.offset <= f.low else None
            )
            files[rel], new_point = hash_file(f.path, usable)
            self._sources.keep_point(rel, new_point)
        if rewritten_funding is not None:
            files[funding_rel] = rewritten_funding
        changed = (
            patcher.opened or rewritten_funding or (old.funding is None) != (t.funding is None)
        )
        return Result(self._entry(t, months, files), "appended" if changed else "unchanged", slots)

    def _month_change(
        self, t: Target, old: InstrumentEntry, month: Month, lo: int, hi: int, listing: Listing
    ) -> Change:
        """A month's new summary, the first bar to write from (`hi`: none), and its candles.

        Months before the last exported one are skipped unread when their partition is known
        unchanged, else rewritten whole if their checksum changed. The last exported month is
        appended to after the last exported bar if its candles up to there are unchanged (read
        from the day of that bar on when the month's state up to that day was saved); any later
        month is new.
        """
        step = self._tf.ms
        before = old.months.get(month.key)
        last_old_month = month_of(old.last)
        key = f"{t.inst_id}/{month.key}"
        if month < last_old_month:
            now = listing.sig(month.start, month.end)
            if self._sources.unchanged(key, now, before.sha256 if before else ""):
                return Change(before, hi, Candles.empty(), False)
        if month == last_old_month:
            quick = self._append(t, old, month, lo, hi, listing)
            if quick is not None:
                return quick
        candles = self._read(t, lo, hi)
        change = self._summarize(t, month, candles)
        summary = change.summary
        if month < last_old_month:
            start = hi if summary == before else lo
        elif month == last_old_month:
            kept = summarize(candles.between(lo, old.last + step), step)
            start = old.last + step if kept == before else lo
        else:
            start = lo
        return Change(summary, start, candles, True, change.prefix)

    def _append(
        self, t: Target, old: InstrumentEntry, month: Month, lo: int, hi: int, listing: Listing
    ) -> Change | None:
        """The last exported month from its saved prefix on, if its candles up to the last
        exported one are unchanged; None if that cannot be told without reading all of it."""
        step = self._tf.ms
        key = f"{t.inst_id}/{month.key}"
        found = self._sources.prefix(key, lambda day: listing.sig(month.start, day))
        if found is None:
            return None
        day, saved = found
        if day > old.last:
            return None
        try:
            acc = MonthAcc(step, saved)
            kept = MonthAcc(step, saved)
        except (KeyError, TypeError, ValueError):
            return None
        read_from = max(lo, day)
        candles = self._read(t, read_from, hi)
        if kept.add(candles.between(read_from, old.last + step)).summary() != old.months.get(
            month.key
        ):
            return None  # something before the last exported bar changed: read the month
        prefix = None
        if t.last < month.end:
            new_day = day_start(t.last)
            acc.add(candles.between(read_from, new_day))
            prefix = acc.save()
            acc.add(candles.between(new_day, hi))
        else:
            acc.add(candles)
        return Change(acc.summary(), old.last + step, candles, True, prefix)

    def _update_funding(
        self, t: Target, old: InstrumentEntry, patcher: Patcher
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
