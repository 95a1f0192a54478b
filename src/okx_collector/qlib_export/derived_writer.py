"""Writing the derived fields (`derived`) of one instrument: in full, or appended to in place.

The same mechanism as the candle fields (`instrument`, `update`): a full write streams month by
month into temp files that replace the old ones (bounded memory, the hash state saved near each
file's end); an update patches the files in place under the exporter's journal and resumes their
checksums, so that its cost follows the new bars, not the history.

What an update may skip is told by the identity of the store files (`sources.SourceCache`, keyed
per instrument, group and month): a month whose files are unchanged since the export that wrote
it is neither read nor written; the newest exported month is read from the UTC day of its last
bar on while the files holding it before that day are unchanged. Any other month is read again
and compared with what the feature file holds there: the slots are rewritten if a value differs
(a revised mark candle, a repaired gap), so the result is always the bytes of a full export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from okx_collector.qlib_export.calendar import Month, month_of, months_between
from okx_collector.qlib_export.derived import GROUPS, shift, source_id, values
from okx_collector.qlib_export.files import (
    VALUE_BYTES,
    StreamedFile,
    export_error,
    file_size,
    hash_file,
    header,
    make_dirs,
    remove,
    remove_stale_temps,
)
from okx_collector.qlib_export.instrument import Result, Target, day_start
from okx_collector.qlib_export.listing import Listing
from okx_collector.qlib_export.manifest import FileEntry, InstrumentEntry, feature_path
from okx_collector.qlib_export.patcher import Patcher
from okx_collector.qlib_export.sources import SourceCache
from okx_collector.qlib_export.syncer import Syncer
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe

Block = dict[str, npt.NDArray[np.float32]]  # field -> values of consecutive slots


class DerivedWriter:
    """Writes the derived fields of one timeframe's instruments under `out`."""

    def __init__(
        self,
        store: Store,
        out: Path,
        tf: Timeframe,
        ids: Mapping[str, set[str]],
        sources: SourceCache,
        syncer: Syncer,
    ) -> None:
        self._store = store  # read only
        self._out = out
        self._tf = tf
        self._ids = ids  # group -> ids stored at `tf` (`derived.stored_ids`)
        self._sources = sources  # shared with the candle fields' writer (thread-safe by key)
        self._syncer = syncer
        self._journal = store.journal_pending() > 0

    def with_fields(self, t: Target, result: Result, old: InstrumentEntry | None) -> Result:
        """`result` (the candle fields of `t`, written) with the derived fields written too."""
        if not self._ids and (old is None or not old.derived):
            return result
        done = self._update(t, old) if old is not None else None
        entries, changed = done if done is not None else self._full(t, old)
        entry = _replace_derived(result.entry, entries)
        action = "appended" if changed and result.action == "unchanged" else result.action
        return Result(entry, action, result.slots)

    # -- helpers -------------------------------------------------------------------------------

    def _rel(self, inst_id: str, field: str) -> str:
        return feature_path(inst_id, field, self._tf.qlib_freq)

    def _fields(self) -> list[str]:
        return [f for g in self._ids for f, _ in GROUPS[g][1]]

    def _sid(self, group: str, inst_id: str) -> str | None:
        sid = source_id(group, inst_id)
        return sid if sid is not None and sid in self._ids[group] else None

    def _listing(self, group: str, sid: str | None) -> Listing | None:
        if sid is None:
            return None
        return Listing(self._store, GROUPS[group][0], sid, self._tf, self._journal)

    def _months(self, t: Target, s: int) -> list[tuple[Month, int, int]]:
        """The months of `t`'s stored times (slot + `s`: `derived.shift`) with bars, and the bars
        [lo, hi) of each inside [first, last]. By stored time, so that a month is one partition:
        the open interest of a month's last bar is stored in the next month."""
        out = []
        for month in months_between(t.first + s, t.last + s):
            lo = max(self._tf.ceil(month.start) - s, t.first)
            hi = min(self._tf.ceil(month.end) - s, t.last + self._tf.ms)
            if lo < hi:
                out.append((month, lo, hi))
        return out

    def _remember(
        self, t: Target, group: str, sid: str, listing: Listing, month: Month, hi: int
    ) -> None:
        """Record what the month's files were when read (call before reading them)."""
        s, key = shift(group, self._tf), f"{t.inst_id}/{group}/{month.key}"
        start, end = self._tf.ceil(month.start), self._tf.ceil(month.end)
        if hi + s >= end:
            self._sources.remember(key, listing.sig(start, end), sid)
        if month.start <= t.last + s < month.end:
            day = day_start(t.last + s)
            self._sources.remember_prefix(key, listing.sig(start, day), day, {"sid": sid})

    def _mark_nan(self, t: Target, entries: Mapping[str, FileEntry]) -> None:
        """Record the files of groups with no series for `t` as all NaN: an update then writes
        only their new slots. By checksum: it holds for the file the manifest describes only."""
        for group in self._ids:
            if self._sid(group, t.inst_id) is None:
                for f, _ in GROUPS[group][1]:
                    rel = self._rel(t.inst_id, f)
                    self._sources.remember(f"{rel}/nan", (), entries[rel].sha256)

    def _was_nan(self, t: Target, old: Mapping[str, FileEntry], field: str) -> bool:
        rel = self._rel(t.inst_id, field)
        return rel in old and self._sources.unchanged(f"{rel}/nan", (), old[rel].sha256)

    # -- full ----------------------------------------------------------------------------------

    def _full(self, t: Target, old: InstrumentEntry | None) -> tuple[dict[str, FileEntry], bool]:
        """Write every derived file of `t` afresh, streamed month by month; remove the files
        of groups no longer exported."""
        step = self._tf.ms
        size = VALUE_BYTES * (1 + t.bars(step))
        entries: dict[str, FileEntry] = {}
        directory = self._out / self._rel(t.inst_id, "x").rsplit("/", 1)[0]
        if self._ids:
            make_dirs(directory)
            remove_stale_temps(directory)
        for group in self._ids:
            sid = self._sid(group, t.inst_id)
            listing = self._listing(group, sid)
            fields = [f for f, _ in GROUPS[group][1]]
            writers: dict[str, StreamedFile] = {}
            try:
                for f in fields:
                    path = self._out / self._rel(t.inst_id, f)
                    writers[f] = StreamedFile(path, header(t.start_index), size, self._syncer)
                for month, lo, hi in self._months(t, shift(group, self._tf)):
                    if sid is not None and listing is not None:
                        self._remember(t, group, sid, listing, month, hi)
                    block = values(self._store, self._tf, group, sid, lo, hi)
                    for f in fields:
                        writers[f].write(block[f])
                for f, w in writers.items():
                    entries[self._rel(t.inst_id, f)] = w.commit()
                    self._sources.keep_point(self._rel(t.inst_id, f), w.point)
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
        for rel in set(old.derived if old else {}) - set(entries):
            remove(self._out / rel)
        self._mark_nan(t, entries)
        if self._ids:
            self._syncer.folder(directory)
        return dict(sorted(entries.items())), True

    # -- update --------------------------------------------------------------------------------

    def _reusable(self, t: Target, old: InstrumentEntry) -> bool:
        """Can `old`'s derived files be updated in place into `t`'s?"""
        if old.first != t.first or t.last < old.last or not self._ids:
            return False
        if set(old.derived) != {self._rel(t.inst_id, f) for f in self._fields()}:
            return False  # a group appeared or went: rewrite them all
        size = VALUE_BYTES * (1 + old.bars)
        return all(
            e.bytes == size and file_size(self._out / rel) == size for rel, e in old.derived.items()
        )

    def _update(self, t: Target, old: InstrumentEntry) -> tuple[dict[str, FileEntry], bool] | None:
        """Bring `old`'s derived files up to `t` in place; None if that is not possible."""
        if not self._reusable(t, old):
            return None
        step = self._tf.ms
        new_header = t.start_index if t.start_index != old.start_index else None
        with Patcher(
            self._out, t.inst_id, t.first, step, t.bars(step), new_header, self._rel, self._syncer
        ) as patcher:
            for group in self._ids:
                self._update_group(t, old, group, patcher)
            if new_header is not None:
                for f in self._fields():
                    patcher.get(f)
        entries = dict(old.derived)
        for field, pf in patcher.opened.items():
            rel = self._rel(t.inst_id, field)
            point = self._sources.point(rel, patcher.before.get(field))
            fits = point is not None and pf.low is not None and point.offset <= pf.low
            usable = point if fits else None
            entries[rel], new_point = hash_file(pf.path, usable)
            self._sources.keep_point(rel, new_point)
        self._mark_nan(t, entries)
        return dict(sorted(entries.items())), bool(patcher.opened)

    def _update_group(self, t: Target, old: InstrumentEntry, group: str, patcher: Patcher) -> None:
        step = self._tf.ms
        sid = self._sid(group, t.inst_id)
        listing = self._listing(group, sid)
        fields = [f for f, _ in GROUPS[group][1]]
        s = shift(group, self._tf)
        last_old = month_of(old.last + s)
        nan_before = sid is None and all(self._was_nan(t, old.derived, f) for f in fields)
        for month, lo, hi in self._months(t, s):
            start = lo  # the first slot to read and compare
            if month <= last_old and sid is None:
                if nan_before:  # NaN then and now: only new slots
                    start = max(lo, old.last + step)
            elif month < last_old and listing is not None:
                key = f"{t.inst_id}/{group}/{month.key}"
                now = listing.sig(self._tf.ceil(month.start), self._tf.ceil(month.end))
                if self._sources.unchanged(key, now, sid or ""):
                    continue
            elif month == last_old and listing is not None:
                start = max(lo, self._from_prefix(t, old, group, month, listing, lo))
            if start >= hi:
                continue
            if sid is not None and listing is not None:
                self._remember(t, group, sid, listing, month, hi)
            block = values(self._store, self._tf, group, sid, start, hi)
            self._patch(t, old, fields, patcher, start, hi, block)

    def _from_prefix(
        self,
        t: Target,
        old: InstrumentEntry,
        group: str,
        month: Month,
        listing: Listing,
        lo: int,
    ) -> int:
        """The first slot of the newest exported month that may differ from what was
        exported: from its saved prefix's day on if the files before that day are unchanged."""
        s = shift(group, self._tf)
        key = f"{t.inst_id}/{group}/{month.key}"
        mstart = self._tf.ceil(month.start)
        found = self._sources.prefix(key, lambda day: listing.sig(mstart, day))
        if found is None or found[0] > old.last + s:
            return lo
        day = found[0]
        # The prefix covers the slots whose stored time is before `day`; floored to the grid.
        step = self._tf.ms
        return t.first + max(0, (day - s - t.first) // step) * step

    def _patch(
        self,
        t: Target,
        old: InstrumentEntry,
        fields: list[str],
        patcher: Patcher,
        start: int,
        hi: int,
        block: Block,
    ) -> None:
        """Write the slots [start, hi) where they differ from the file (new slots always)."""
        step = self._tf.ms
        new_from = max(start, old.last + step)  # slots the file did not hold
        kept = (min(hi, new_from) - start) // step  # slots it held: compare first
        for f in fields:
            data = block[f]
            from_slot = start
            if kept > 0:
                path = self._out / self._rel(t.inst_id, f)
                held = _read_slots(path, t.first, step, start, kept)
                if held == np.ascontiguousarray(data[:kept], dtype="<f4").tobytes():
                    from_slot = new_from
            first = (from_slot - start) // step
            if first < len(data):
                patcher.get(f).write_at(from_slot, data[first:])


def _read_slots(path: Path, first: int, step: int, start: int, count: int) -> bytes:
    """The bytes of `count` slots of a feature file from the bar opening at `start`."""
    offset = VALUE_BYTES * (1 + (start - first) // step)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise export_error(path, "read", exc) from exc
    try:
        return os.pread(fd, VALUE_BYTES * count, offset)
    except OSError as exc:
        raise export_error(path, "read", exc) from exc
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _replace_derived(entry: InstrumentEntry, derived: dict[str, FileEntry]) -> InstrumentEntry:
    return dataclasses.replace(entry, derived=derived)
