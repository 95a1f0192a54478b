"""Updating one instrument's feature files in place (an incremental export).

An update writes only what changed: months before the last exported one are skipped unread when
their partition files are unchanged (`sources`), or rewritten where their checksum changed; the
last exported month is read from the UTC day of its last exported candle on (its state up to that
day is saved), checked, and appended to; later months are new. Every bar is written at its explicit
slot, so the result is the same bytes as a full export (`instrument.InstrumentWriter.full`).
"""

from __future__ import annotations

from okx_collector.qlib_export.arrays import (
    FIELDS,
    FUNDING_FIELD,
    Candles,
    MonthAcc,
    MonthSummary,
    bar_block,
    funding_block,
    summarize,
)
from okx_collector.qlib_export.calendar import Month, month_of, months_between
from okx_collector.qlib_export.files import VALUE_BYTES, file_size, hash_file, remove
from okx_collector.qlib_export.instrument import (
    Change,
    InstrumentWriter,
    Result,
    Target,
    day_start,
)
from okx_collector.qlib_export.listing import Listing
from okx_collector.qlib_export.manifest import FileEntry, InstrumentEntry
from okx_collector.qlib_export.patcher import Patcher
from okx_collector.store.schema import CANDLES


class InstrumentUpdater(InstrumentWriter):
    """`InstrumentWriter` that can also bring an exported instrument up to date in place."""

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
        before = Listing(self._store, CANDLES, t.inst_id, self._tf, self._journal)
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
        self._remember(t, before, changes)
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
