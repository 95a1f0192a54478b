"""`export_qlib`: write or update a qlib data directory from the store (DESIGN.md §4b).

The order of work is what makes it crash-safe:

1. mark the timeframe as being modified (`outdir.begin`);
2. write each instrument's feature files (new ones streamed to temp files and renamed, existing
   ones patched in place), two instruments at a time, while a `files.Syncer` makes them durable;
3. rewrite or extend the calendar, rewrite the instruments files;
4. wait for the syncer, write `manifest.json` atomically, then clear the mark.

An export that finds the mark left behind does not trust the manifest for that timeframe and
rewrites it in full; otherwise the manifest is the source of truth about every file.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from okx_collector import __version__
from okx_collector.errors import BadInput
from okx_collector.fsutil import fsync_dir
from okx_collector.qlib_export import derived, outdir
from okx_collector.qlib_export.arrays import Funding
from okx_collector.qlib_export.calendar import LINE_BYTES, calendar_chunks, format_time
from okx_collector.qlib_export.derived_writer import DerivedWriter
from okx_collector.qlib_export.files import (
    file_size,
    ident,
    remove,
    remove_stale_temps,
    rewrite_tail,
    stream_atomic,
    write_atomic,
)
from okx_collector.qlib_export.instrument import Result, Target
from okx_collector.qlib_export.manifest import (
    INSTRUMENTS_ALL,
    MANIFEST,
    FileEntry,
    InstrumentEntry,
    Manifest,
    TimeframeEntry,
    calendar_path,
    dumps,
    freq_instruments_path,
)
from okx_collector.qlib_export.sources import SOURCES_FILE, SourceCache
from okx_collector.qlib_export.syncer import Syncer
from okx_collector.qlib_export.update import InstrumentUpdater
from okx_collector.store.arrow import to_float64, to_int64
from okx_collector.store.store import Store
from okx_collector.timeframes import VALID_TIMEFRAMES, Timeframe

WORKERS = min(2, os.cpu_count() or 1)  # instruments exported at once
MAX_SLOT = 1 << 24  # float32 holds every integer start index up to here (qlib's file header)


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one `export_qlib` call did."""

    out: Path
    timeframe: str
    freq: str  # qlib's name for the timeframe: calendars/{freq}.txt, *.{freq}.bin
    instruments: tuple[str, ...]  # exported, sorted
    calendar_first: int  # first calendar bar, ms UTC
    calendar_last: int  # last calendar bar, ms UTC
    bars: int  # calendar length
    rows: int  # candles in the export (all instruments)
    missing: int  # missing candles between each instrument's first and last bar, NaN in the files
    slots_written: int  # bar slots (per field) written by this call
    rewritten: tuple[str, ...]  # instruments whose files were written in full
    appended: tuple[str, ...]  # instruments updated in place
    unchanged: tuple[str, ...]  # instruments whose files were already up to date
    removed: tuple[str, ...]  # instruments no longer exported for this timeframe
    seconds: float
    notes: tuple[str, ...] = field(default=())  # why something was rewritten

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"qlib {self.freq}: {len(self.instruments)} instruments, {self.bars} bars "
            f"{format_time(self.calendar_first)} .. {format_time(self.calendar_last)} UTC, "
            f"{self.rows} candles ({self.missing} missing); wrote {self.slots_written} bar slots "
            f"(rewritten {len(self.rewritten)}, appended {len(self.appended)}, "
            f"unchanged {len(self.unchanged)}, removed {len(self.removed)}) "
            f"in {self.seconds:.2f} s -> {self.out}"
        )


def funding_source(inst_id: str, funded: set[str]) -> str | None:
    """The perpetual whose settled funding applies to `inst_id`, if it was collected.

    A perpetual has its own; a spot pair (`BTC-USDT`) gets its perpetual's (`BTC-USDT-SWAP`);
    futures and options get none.
    """
    if inst_id in funded:
        return inst_id
    swap = f"{inst_id}-SWAP"
    if inst_id.count("-") == 1 and swap in funded:
        return swap
    return None


def _select(store: Store, tf: Timeframe, instruments: Sequence[str] | None) -> list[str]:
    series = store.list_candle_series()
    available = sorted({inst for inst, name in series if name == tf.name})
    if not available:
        names = {name for _, name in series}
        have = [t for t in VALID_TIMEFRAMES if t in names]
        what = f"it has {', '.join(have)}" if have else "it is empty"
        raise BadInput(
            f"the store at {store.data_dir} has no {tf.name} candles ({what}); "
            "run backfill first, or pick another --timeframe"
        )
    if instruments is None:
        return available
    wanted = sorted(set(instruments))
    unknown = [i for i in wanted if i not in set(available)]
    if unknown or not wanted:
        shown = ", ".join(available[:10]) + (", ..." if len(available) > 10 else "")
        raise BadInput(
            f"no {tf.name} candles in the store at {store.data_dir} for "
            f"{', '.join(unknown) or 'an empty instrument list'}; "
            f"it has {tf.name} candles for {shown}"
        )
    return wanted


def _read_funding(store: Store, inst_id: str) -> Funding | None:
    table = store.read_funding(inst_id)
    if table.num_rows == 0:
        return None
    return Funding(
        to_int64(table.column("funding_time")),
        to_float64(table.column("funding_rate")),
    )


def _targets(
    store: Store, ranges: dict[str, tuple[int, int]], cal_first: int, tf: Timeframe
) -> list[Target]:
    """What each instrument's files must hold, with the funding that applies to it."""
    funded = set(store.list_funding_series())
    fundings: dict[str, Funding | None] = {}
    targets = []
    for inst in sorted(ranges):
        first, last = ranges[inst]
        source = funding_source(inst, funded)
        if source is not None and source not in fundings:
            fundings[source] = _read_funding(store, source)
        funding = fundings.get(source) if source is not None else None
        start_index = (first - cal_first) // tf.ms
        targets.append(Target(inst, first, last, start_index, funding, source if funding else None))
    return targets


def _instruments_text(ranges: dict[str, tuple[int, int]]) -> bytes:
    lines = (
        f"{inst}\t{format_time(first)}\t{format_time(last)}\n"
        for inst, (first, last) in sorted(ranges.items())
    )
    return "".join(lines).encode()


def _union_ranges(timeframes: dict[str, TimeframeEntry]) -> dict[str, tuple[int, int]]:
    """Each instrument's widest range over every exported timeframe (for instruments/all.txt)."""
    ranges: dict[str, tuple[int, int]] = {}
    for section in timeframes.values():
        for inst, e in section.instruments.items():
            lo, hi = ranges.get(inst, (e.first, e.last))
            ranges[inst] = (min(lo, e.first), max(hi, e.last))
    return ranges


def _write_calendar(
    out: Path,
    tf: Timeframe,
    first: int,
    bars: int,
    old: TimeframeEntry | None,
    sources: SourceCache,
) -> FileEntry:
    """Extend (or cut) the calendar in place when it starts where it did; else rewrite it."""
    rel = calendar_path(tf.qlib_freq)
    path = out / rel
    if old is not None and old.first == first:
        old_bars = (old.last - old.first) // tf.ms + 1
        if file_size(path) == LINE_BYTES * old_bars:
            keep = min(old_bars, bars)
            if keep == bars == old_bars:
                sources.keep_point(rel, sources.point(rel, ident(path)))
                return old.files[rel]
            point = sources.point(rel, ident(path))
            chunks = calendar_chunks(first, keep, bars, tf.ms)
            entry, point = rewrite_tail(path, LINE_BYTES * keep, chunks, point)
            sources.keep_point(rel, point)
            return entry
    entry, point = stream_atomic(path, calendar_chunks(first, 0, bars, tf.ms), LINE_BYTES * bars)
    sources.keep_point(rel, point)
    return entry


def _remove_instrument(out: Path, entry: InstrumentEntry) -> None:
    for rel in [*entry.files, *entry.derived]:
        remove(out / rel)
    directory = (out / next(iter(entry.files))).parent if entry.files else None
    if directory is not None:
        # Fails while other timeframes' files (or the user's) are still there.
        with contextlib.suppress(OSError):
            directory.rmdir()


def export_qlib(
    store: Store,
    out: Path,
    tf: Timeframe,
    instruments: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Write or update the qlib directory `out` with the store's `tf` candles (and funding).

    `instruments` (default: every instrument the store has for `tf`) is the complete set the
    directory holds for `tf` afterwards: instruments exported before and not named now are
    removed from it. Raises `BadInput` for an empty store, unknown instruments, or an `out`
    that holds anything but an export of ours.
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    out = Path(out)
    outdir.read_state(out)  # refuse a foreign directory before creating anything in it
    with outdir.locked(out), Syncer() as syncer:
        manifest, note = outdir.read_state(out)
        notes = [note] if note else []
        selected = _select(store, tf, instruments)
        ranges: dict[str, tuple[int, int]] = {}
        for inst in selected:
            first, last = store.first_candle_ts(inst, tf), store.last_candle_ts(inst, tf)
            if first is not None and last is not None:
                ranges[inst] = (first, last)
        if not ranges:
            raise BadInput(f"the store at {store.data_dir} has no readable {tf.name} candles")
        cal_first = min(f for f, _ in ranges.values())
        cal_last = max(last for _, last in ranges.values())
        bars = (cal_last - cal_first) // tf.ms + 1
        if bars > MAX_SLOT:
            raise BadInput(f"{bars} {tf.name} bars is more than a qlib calendar can index")

        previous = manifest.timeframes.get(tf.name) if manifest else None
        trusted = previous
        if previous is not None and outdir.interrupted(out, tf.name):
            trusted = None
            notes.append(f"the last {tf.name} export was interrupted; rewriting it in full")
        for n in notes:
            say(n)

        outdir.begin(out, tf.name)
        for directory in (out, out / "calendars", out / "instruments"):
            remove_stale_temps(directory)
        targets = _targets(store, ranges, cal_first, tf)
        sources = SourceCache.load(out, tf.name)
        writer = InstrumentUpdater(store, out, tf, sources, syncer)
        results: dict[str, Result] = {}
        derived_writer = DerivedWriter(
            store, out, tf, derived.stored_ids(store, tf), sources, syncer
        )

        def one(target: Target) -> Result:
            old = trusted.instruments.get(target.inst_id) if trusted is not None else None
            result = writer.update(target, old) if old is not None else None
            result = result if result is not None else writer.full(target)
            return derived_writer.with_fields(target, result, old)

        # Instruments are independent: two at a time keep both cores busy (Parquet decoding,
        # numpy, sha256 and file writes all release the GIL); memory stays a month per worker.
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="qlib-export") as pool:
            try:
                for target, result in zip(targets, pool.map(one, targets), strict=True):
                    results[target.inst_id] = result
                    say(f"{target.inst_id} {tf.name}: {result.action}, {result.slots} bars written")
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

        removed = sorted(set(previous.instruments) - set(ranges)) if previous else []
        for inst in removed:
            assert previous is not None
            _remove_instrument(out, previous.instruments[inst])
            say(f"{inst} {tf.name}: removed (not selected)")

        freq = tf.qlib_freq
        entries = {inst: r.entry for inst, r in results.items()}
        section_files = {
            calendar_path(freq): _write_calendar(out, tf, cal_first, bars, trusted, sources),
            freq_instruments_path(freq): write_atomic(
                out / freq_instruments_path(freq),
                _instruments_text({i: (e.first, e.last) for i, e in entries.items()}),
            ),
        }
        section = TimeframeEntry(
            freq=freq,
            store=str(store.data_dir.resolve()),
            first=cal_first,
            last=cal_last,
            files=section_files,
            instruments=entries,
        )
        timeframes = dict(manifest.timeframes) if manifest else {}
        timeframes[tf.name] = section
        timeframes = dict(sorted(timeframes.items()))
        all_entry = write_atomic(
            out / INSTRUMENTS_ALL, _instruments_text(_union_ranges(timeframes))
        )
        syncer.wait()  # every feature file durable before the manifest says what they hold
        for sub in ("calendars", "instruments", "features"):
            fsync_dir(out / sub)
        new = Manifest(
            version=__version__, timeframes=timeframes, files={INSTRUMENTS_ALL: all_entry}
        )
        steps = {name: Timeframe.parse(name).ms for name in timeframes}
        write_atomic(out / MANIFEST, dumps(new, steps))
        fsync_dir(out)
        outdir.finish(out, tf.name)
        write_atomic(out / SOURCES_FILE, sources.dumps())

    by_action: dict[str, list[str]] = {"rewritten": [], "appended": [], "unchanged": []}
    for inst, r in sorted(results.items()):
        by_action[r.action].append(inst)
    return ExportReport(
        out=out,
        timeframe=tf.name,
        freq=freq,
        instruments=tuple(sorted(results)),
        calendar_first=cal_first,
        calendar_last=cal_last,
        bars=bars,
        rows=sum(e.rows for e in entries.values()),
        missing=sum(e.missing for e in entries.values()),
        slots_written=sum(r.slots for r in results.values()),
        rewritten=tuple(by_action["rewritten"]),
        appended=tuple(by_action["appended"]),
        unchanged=tuple(by_action["unchanged"]),
        removed=tuple(removed),
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
