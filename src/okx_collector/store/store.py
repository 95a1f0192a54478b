"""`Store`: the Parquet dataset of candles and funding rates (DESIGN.md §4); its only writer."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.models import Candle, FundingObservation, FundingRate
from okx_collector.store.arrow import to_int64
from okx_collector.store.atomic import make_dirs, storage_error, temp_name
from okx_collector.store.compact import RoundResult, compact_all, pending_files
from okx_collector.store.derived import DerivedStore
from okx_collector.store.journal import (
    JournalKind,
    JournalReader,
    JournalSpan,
    JournalWriter,
    SeriesKey,
)
from okx_collector.store.layout import (
    Layout,
    Period,
    candle_period,
    list_partitions,
    overlapping,
    validate_timeframe,
)
from okx_collector.store.meta import lost_starts, read_first
from okx_collector.store.migrate import migrate_all
from okx_collector.store.recovery import RecoveryNote, check_readable, walk_dirs
from okx_collector.store.repair import recover_journal, recover_series
from okx_collector.store.schema import (
    CANDLES,
    FUNDING,
    FUNDING_LIVE,
    TIMEFRAME_KINDS,
    Kind,
    candles_batch,
    candles_tables,
    funding_live_table,
    funding_table,
)
from okx_collector.store.series import Series, SeriesIO
from okx_collector.store.union import UnionReader
from okx_collector.store.validate import (
    valid_together,
    validate_candles,
    validate_funding,
    validate_funding_live,
)
from okx_collector.timeframes import VALID_TIMEFRAMES, Timeframe

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]


class Store(DerivedStore):
    """Candles, settled funding, live funding observations, and (`store.derived`) mark and index
    candles and open interest: a journal of immutable batch
    files in front of per-series Parquet partitions (docs/storage.md).

    Every method is safe to call from worker threads (`asyncio.to_thread`). Writes append to the
    journal; `compact` merges it into the partitions, each replaced atomically, so readers (here
    or in other processes) only ever see whole files. Reads see partitions plus journal and never
    move a file: unreadable ones are skipped and reported by `take_notes()`.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)  # the dataset root (DATA_DIR)
        self.layout = Layout(self.data_dir)  # path arithmetic under it
        self._io = SeriesIO()  # partition locks, merges and notes
        self._journal = JournalWriter(self.data_dir)  # where every write goes first
        self._journal_reader = JournalReader(self.data_dir)  # what reads add to the partitions
        self._union = UnionReader(self._io, self._journal_reader)  # reads of both
        # Validated series descriptors, by (inst_id, timeframe): as many as the series touched.
        self._candle_series: dict[tuple[str, Timeframe], Series] = {}
        self._tf_series: dict[tuple[str, str, Timeframe], Series] = {}  # the other kinds' too
        self._tf_series_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.data_dir)!r})"

    # -- series descriptors --------------------------------------------------------------------

    def _candles(self, inst_id: str, tf: Timeframe) -> Series:
        found = self._candle_series.get((inst_id, tf))
        if found is None:
            tf = validate_timeframe(tf)
            found = Series(
                self.layout.candle_dir(inst_id, tf),
                CANDLES,
                candle_period(tf),
                f"candles {inst_id} {tf}",
            )
            self._candle_series[(inst_id, tf)] = found
        return found

    def _funding(self, inst_id: str) -> Series:
        return Series(self.layout.funding_dir(inst_id), FUNDING, Period.YEAR, f"funding {inst_id}")

    def _funding_live(self, inst_id: str) -> Series:
        return Series(
            self.layout.funding_live_dir(inst_id),
            FUNDING_LIVE,
            Period.DAY,
            f"funding_live {inst_id}",
        )

    # -- writing -------------------------------------------------------------------------------

    def write_candles(self, inst_id: str, tf: Timeframe, candles: Sequence[Candle]) -> int:
        """Append closed candles to the journal (durable on return; a later write of the same
        `ts` wins, see `compact`); returns the rows written.

        The whole batch is validated first (raises `InvalidRecords`, writing nothing).
        """
        return self.write_candles_many([(inst_id, tf, candles)])

    def write_candles_many(self, items: Sequence[tuple[str, Timeframe, Sequence[Candle]]]) -> int:
        """`write_candles` for many series at once: one journal file for the whole batch (a
        live close of a thousand series costs one small fsynced file). Every series is
        validated before anything is written."""
        named = [self._candles(inst_id, tf) for inst_id, tf, _ in items]  # validates the names
        series = [one for one, item in zip(named, items, strict=True) if item[2]]
        items = [item for item in items if item[2]]
        if not items:
            return 0
        named_rows = [(inst_id, tf.name, rows) for inst_id, tf, rows in items]
        batch = candles_batch(named_rows)
        if not valid_together(batch, {tf for _, tf, _ in items}):
            tables = candles_tables(named_rows)
            for one, table, (_, tf, _) in zip(series, tables, items, strict=True):
                validate_candles(table, one.label, tf)  # raises, naming the bad series
        return self._append("candles", batch)

    def write_funding(self, inst_id: str, rates: Sequence[FundingRate]) -> int:
        """Append settled funding rates keyed by `funding_time`; returns the rows written."""
        return self.write_funding_many([(inst_id, rates)])

    def write_funding_many(self, items: Sequence[tuple[str, Sequence[FundingRate]]]) -> int:
        """`write_funding` for many perpetuals: one journal file (all validated first)."""
        tables = []
        for inst_id, rates in items:
            table = funding_table(inst_id, rates)
            validate_funding(table, self._funding(inst_id).label)
            tables.append(table)
        return self._append("funding", _joined(tables))

    def write_funding_live(self, inst_id: str, obs: Sequence[FundingObservation]) -> int:
        """Append live funding observations keyed by `ts`; returns the rows written."""
        return self.write_funding_live_many([(inst_id, obs)])

    def write_funding_live_many(
        self, items: Sequence[tuple[str, Sequence[FundingObservation]]]
    ) -> int:
        """`write_funding_live` for many perpetuals: one journal file (all validated first)."""
        tables = []
        for inst_id, obs in items:
            table = funding_live_table(inst_id, obs)
            validate_funding_live(table, self._funding_live(inst_id).label)
            tables.append(table)
        return self._append("funding_live", _joined(tables))

    def _append(self, kind: JournalKind, table: pa.Table) -> int:
        if table.num_rows:
            self._journal.append(kind, table)
        return int(table.num_rows)

    def compact(self, max_files: int | None = None) -> RoundResult:
        """Merge the journal into the partitions (all of it, or one round of at most
        `max_files` files per kind); see `compact` for the precedence rule. A writing command
        runs it at start (finishing a crashed one), in the background and at a clean stop."""
        result = compact_all(
            self.data_dir, self._series_for, self._io.stage_in, max_files=max_files
        )
        for path, reason in result.unreadable:
            self._io.note(RecoveryNote(path, "unreadable", reason))
        return result

    def journal_pending(self) -> int:
        """Journal files not yet merged into the partitions."""
        return pending_files(self.data_dir)

    def _series_for(self, kind: Kind, key: SeriesKey) -> Series:
        inst_id, tf_name = key
        if kind is CANDLES:
            return self._candles(inst_id, Timeframe.parse(tf_name))
        if kind in TIMEFRAME_KINDS:
            return self.kind_series(kind, inst_id, Timeframe.parse(tf_name))
        return self._funding(inst_id) if kind is FUNDING else self._funding_live(inst_id)

    def check_writable(self) -> None:
        """Raise `StorageError` (one line, naming the path) unless files can be created here."""
        make_dirs(self.data_dir)
        probe = temp_name(self.data_dir / "write-check")
        try:
            with probe.open("xb"):
                pass
        except OSError as exc:
            raise storage_error(self.data_dir, "write to", exc) from exc
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    # -- reading -------------------------------------------------------------------------------

    def read_candles(
        self,
        inst_id: str,
        tf: Timeframe,
        start: int | None = None,
        end: int | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Candles with open time in [start, end), sorted by `ts` (empty table if none).

        `columns`: only these, in this order (the others are not decoded: a year of 1m's
        prices read in half the time of every column)."""
        series, key = self._candles(inst_id, tf), (inst_id, tf.name)
        if columns is None or "source" in columns:  # (`source` needs the whole precedence rule)
            table = self._union.read(series, key, start, end)
            return table if columns is None else table.select(list(columns))
        return self._union.read(series, key, start, end, list(columns))

    def read_candles_df(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> pd.DataFrame:
        """`read_candles` as a pandas DataFrame (default RangeIndex, `ts` as int64 ms)."""
        return self.read_candles(inst_id, tf, start, end).to_pandas()

    def read_funding(
        self, inst_id: str, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """Settled funding with `funding_time` in [start, end), sorted."""
        return self._union.read(self._funding(inst_id), (inst_id, ""), start, end)

    def read_funding_live(
        self, inst_id: str, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """Live funding observations with `ts` in [start, end), sorted."""
        return self._union.read(self._funding_live(inst_id), (inst_id, ""), start, end)

    def candle_timestamps(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> npt.NDArray[np.int64]:
        """Stored candle open times in [start, end): int64, sorted, unique."""
        table = self._union.read(self._candles(inst_id, tf), (inst_id, tf.name), start, end, ["ts"])
        return to_int64(table.column("ts"))

    def funding_times(
        self, inst_id: str, start: int | None = None, end: int | None = None
    ) -> npt.NDArray[np.int64]:
        """Stored settled funding times in [start, end): int64, sorted, unique."""
        table = self._union.read(
            self._funding(inst_id), (inst_id, ""), start, end, ["funding_time"]
        )
        return to_int64(table.column("funding_time"))

    def candle_partition_files(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> list[Path]:
        """The files that may hold candles with open time in [start, end): partitions, then the
        journal files holding rows of the series there (their names identify their content:
        the files never change)."""
        series = self._candles(inst_id, tf)
        parts = overlapping(list_partitions(series.directory, series.period), start, end)
        spans = self.journal_spans(CANDLES, inst_id, tf)
        return [series.path(p) for p in parts] + [s.path for s in spans if s.overlaps(start, end)]

    def journal_spans(self, kind: Kind, series_id: str, tf: Timeframe) -> list[JournalSpan]:
        """The journal files holding rows of the series (candles, or `kind` of
        `schema.TIMEFRAME_KINDS`, of `series_id` at `tf`), oldest first, each with the range
        of those rows' `ts`: what a reader needs to tell which files hold a range."""
        return self._union.journal_spans(kind, (series_id, validate_timeframe(tf).name))

    def last_candle_ts(self, inst_id: str, tf: Timeframe) -> int | None:
        """Open time of the newest stored candle."""
        return self._union.edge(self._candles(inst_id, tf), (inst_id, tf.name), newest=True)

    def first_candle_ts(self, inst_id: str, tf: Timeframe) -> int | None:
        """Open time of the oldest stored candle."""
        return self._union.edge(self._candles(inst_id, tf), (inst_id, tf.name), newest=False)

    def expected_first_ts(self, inst_id: str, tf: Timeframe) -> int | None:
        """Where the series is known to start, lost partitions included (see `store.meta`):
        the older of its recorded start and its first stored candle; without a record, the
        span of a first partition that cannot be read or of a moved-aside one counts too.
        Older than `first_candle_ts` when a range was lost: `status` reports it as a gap,
        backfill and collect re-fetch it."""
        series = self._candles(inst_id, tf)
        found = [read_first(series.directory), self.first_candle_ts(inst_id, tf)]
        if found[0] is None:  # no record (an older data dir): what the file names say
            found.extend(lost_starts(series.directory, series.period))
            for part in list_partitions(series.directory, series.period):
                if check_readable(series.path(part), series.kind.schema, deep=False) is None:
                    break  # a readable first partition: its first row is the stored first
                found.append(part.start)
        known = [v for v in found if v is not None]
        return min(known) if known else None

    def last_funding_time(self, inst_id: str) -> int | None:
        """The newest stored settled `funding_time`."""
        return self._union.edge(self._funding(inst_id), (inst_id, ""), newest=True)

    def list_candle_series(self) -> list[tuple[str, str]]:
        """(inst_id, timeframe name) of every stored candle series, sorted."""
        return sorted(set(self.layout.candle_series()) | self._union.journal_series(CANDLES))

    def list_funding_series(self) -> list[str]:
        """inst_ids with stored settled funding, sorted."""
        stored = set(self.layout.instrument_series(self.layout.funding_root, Period.YEAR))
        return sorted(stored | {i for i, _ in self._union.journal_series(FUNDING)})

    def list_funding_live_series(self) -> list[str]:
        """inst_ids with stored live funding observations, sorted."""
        stored = set(self.layout.instrument_series(self.layout.funding_live_root, Period.DAY))
        return sorted(stored | {i for i, _ in self._union.journal_series(FUNDING_LIVE)})

    # -- repair --------------------------------------------------------------------------------

    def take_notes(self) -> list[RecoveryNote]:
        """Repairs made during reads and writes since the last call (then forgotten)."""
        return self._io.take_notes()

    def recover(self, *, deep: bool = False) -> list[RecoveryNote]:
        """At the start of a writing command (under the data dir's lock): delete stale temp files,
        move unreadable journal files and partitions aside, record where older series start, and
        fold files of older layouts into the current one (day files of candles into month files,
        `store.migrate`, with one notice line); report what was deleted or moved.

        The default check reads each partition's footer and column names (what a crash can tear);
        `deep=True` decodes every file too (`store.repair`).
        """
        notes = recover_journal(self.data_dir, self._journal_reader, deep)
        for series in self._series_dirs():
            notes.extend(recover_series(self._io, series, deep))
        # After the checks (an unreadable day file was moved aside and its span recorded):
        migrate_all(self._io, self._series_dirs(), str(self.data_dir))
        return notes

    def dataset_files(self) -> list[Path]:
        """Every partition file of the dataset (for manifests and checksums), sorted."""
        found: list[Path] = []
        for series in self._series_dirs():
            found.extend(series.path(p) for p in list_partitions(series.directory, series.period))
        return sorted(found, key=os.fspath)

    def _series_dirs(self) -> Iterator[Series]:
        """Every series directory present on disk, with what it holds and how it is split."""
        for directory in walk_dirs(self.layout.candles_root, 2):
            if directory.name in VALID_TIMEFRAMES:
                period = candle_period(Timeframe.parse(directory.name))
                yield Series(directory, CANDLES, period, f"candles {directory}")
        for directory in walk_dirs(self.layout.funding_root, 1):
            yield Series(directory, FUNDING, Period.YEAR, f"funding {directory}")
        for directory in walk_dirs(self.layout.funding_live_root, 1):
            yield Series(directory, FUNDING_LIVE, Period.DAY, f"funding_live {directory}")
        yield from self._derived_dirs()


def _joined(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()
