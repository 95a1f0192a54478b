"""`Store`: the Parquet dataset of candles and funding rates (DESIGN.md §4); its only writer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.memory import give_back
from okx_collector.models import Candle, FundingObservation, FundingRate
from okx_collector.store.arrow import to_int64
from okx_collector.store.atomic import make_dirs, storage_error, temp_name
from okx_collector.store.cache import TableCache, file_sig
from okx_collector.store.layout import (
    Layout,
    Period,
    candle_period,
    list_partitions,
    overlapping,
    validate_timeframe,
)
from okx_collector.store.recovery import (
    RecoveryNote,
    check_readable,
    remove_stale_temps,
    walk_dirs,
)
from okx_collector.store.schema import (
    CANDLES,
    FUNDING,
    FUNDING_LIVE,
    candles_table,
    candles_tables,
    funding_live_table,
    funding_table,
)
from okx_collector.store.series import Series, SeriesIO
from okx_collector.store.validate import (
    InvalidRecords,
    validate_candles,
    validate_funding,
    validate_funding_live,
)
from okx_collector.timeframes import VALID_TIMEFRAMES, Timeframe

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

GROUP_COMMIT_SERIES = 100  # series per group commit: bounds the tables held until sync
DEFAULT_CACHE_ENTRIES = (
    4096  # series whose newest partition stays decoded (a live job has one per series)
)
DEFAULT_CACHE_BYTES = 64 * 2**20  # and at most this many bytes of them (a live job's RSS)


def cache_bytes(cache_mb: float | None) -> int:
    """The cache size for a user's `--cache-mb` (None: the default)."""
    return DEFAULT_CACHE_BYTES if cache_mb is None else int(cache_mb * 2**20)


class Store:
    """Candles, settled funding and live funding observations, as partitioned Parquet files.

    Every method is safe to call from worker threads (`asyncio.to_thread`): writes to one
    partition are serialised, and readers (here or in other processes) only ever see whole files.
    Unreadable partitions met along the way are moved aside and reported by `take_notes()`.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir)  # the dataset root (DATA_DIR)
        self.layout = Layout(self.data_dir)  # path arithmetic under it
        self._io = SeriesIO(TableCache(cache_entries, cache_bytes))  # locks, cache, notes
        # Validated series descriptors, by (inst_id, timeframe): as many as the series touched.
        self._candle_series: dict[tuple[str, Timeframe], Series] = {}

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
        """Upsert closed candles (later value wins); returns rows added or changed.

        The whole batch is validated first (raises `InvalidRecords`, writing nothing).
        """
        series = self._candles(inst_id, tf)
        table = candles_table(inst_id, tf.name, candles)
        validate_candles(table, series.label, tf)
        return self._io.write(series, table)

    def write_candles_many(self, items: Sequence[tuple[str, Timeframe, Sequence[Candle]]]) -> int:
        """`write_candles` for many series at once, durable with one group commit per chunk: the
        live writer's call. A 1m/3m/5m series' newest day goes to hour files (see `layout`), so a
        close late in the day rewrites an hour of rows; `compact_pending` merges them later.

        Every batch is validated before anything is written. Chunks bound the lock files held
        open at once (one per series) well below the usual limit of 1,024 open files.
        """
        series = [self._candles(inst_id, tf) for inst_id, tf, _ in items]
        tables = candles_tables([(inst_id, tf.name, rows) for inst_id, tf, rows in items])
        if not _valid_together(tables, {tf for _, tf, _ in items}):
            for one, table, (_, tf, _) in zip(series, tables, items, strict=True):
                validate_candles(table, one.label, tf)  # raises, naming the bad series
        prepared = list(zip(series, tables, strict=True))
        return sum(
            self._io.write_many(prepared[i : i + GROUP_COMMIT_SERIES], hours=True)
            for i in range(0, len(prepared), GROUP_COMMIT_SERIES)
        )

    def write_funding(self, inst_id: str, rates: Sequence[FundingRate]) -> int:
        """Upsert settled funding rates keyed by `funding_time`; returns rows added or changed."""
        series = self._funding(inst_id)
        table = funding_table(inst_id, rates)
        validate_funding(table, series.label)
        return self._io.write(series, table)

    def write_funding_live(self, inst_id: str, obs: Sequence[FundingObservation]) -> int:
        """Upsert live funding observations keyed by `ts`; returns rows added or changed."""
        series = self._funding_live(inst_id)
        table = funding_live_table(inst_id, obs)
        validate_funding_live(table, series.label)
        return self._io.write(series, table)

    def compact_pending(self, limit: int) -> int:
        """Merge the hour files of days that have ended into their day files, for up to `limit`
        series that `write_candles_many` saw move to a new day; how many still wait. Cheap when
        none does: a live writer calls it whenever it is idle."""
        return self._io.compact_pending(limit)

    def give_back_memory(self) -> None:
        """Return freed allocator pages to the system (`okx_collector.memory`); a live writer
        calls it once its queue is idle after a burst of writes, so that RSS between closes stays
        at its settled level for months."""
        give_back()

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
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """Candles with open time in [start, end), sorted by `ts` (empty table if none)."""
        return self._io.read_range(self._candles(inst_id, tf), start, end)

    def read_candles_df(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> pd.DataFrame:
        """`read_candles` as a pandas DataFrame (default RangeIndex, `ts` as int64 ms)."""
        return self.read_candles(inst_id, tf, start, end).to_pandas()

    def read_funding(
        self, inst_id: str, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """Settled funding with `funding_time` in [start, end), sorted."""
        return self._io.read_range(self._funding(inst_id), start, end)

    def read_funding_live(
        self, inst_id: str, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """Live funding observations with `ts` in [start, end), sorted."""
        return self._io.read_range(self._funding_live(inst_id), start, end)

    def candle_timestamps(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> npt.NDArray[np.int64]:
        """Stored candle open times in [start, end): int64, sorted, unique."""
        table = self._io.read_range(self._candles(inst_id, tf), start, end, ["ts"])
        return to_int64(table.column("ts"))

    def funding_times(
        self, inst_id: str, start: int | None = None, end: int | None = None
    ) -> npt.NDArray[np.int64]:
        """Stored settled funding times in [start, end): int64, sorted, unique."""
        table = self._io.read_range(self._funding(inst_id), start, end, ["funding_time"])
        return to_int64(table.column("funding_time"))

    def candle_partition_files(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> list[Path]:
        """The partition files that may hold candles with open time in [start, end), sorted."""
        series = self._candles(inst_id, tf)
        parts = overlapping(list_partitions(series.directory, series.period), start, end)
        return [series.path(p) for p in parts]

    def last_candle_ts(self, inst_id: str, tf: Timeframe) -> int | None:
        """Open time of the newest stored candle (reads only the newest partition's `ts`)."""
        return self._io.edge(self._candles(inst_id, tf), newest=True)

    def prime_candles(self, inst_id: str, tf: Timeframe) -> None:
        """Load the series' newest partition into the cache, so that the first live close after
        a start costs what every later one does (no read of the file it rewrites)."""
        self._io.prime(self._candles(inst_id, tf))

    def first_candle_ts(self, inst_id: str, tf: Timeframe) -> int | None:
        """Open time of the oldest stored candle."""
        return self._io.edge(self._candles(inst_id, tf), newest=False)

    def last_funding_time(self, inst_id: str) -> int | None:
        """The newest stored settled `funding_time`."""
        return self._io.edge(self._funding(inst_id), newest=True)

    def list_candle_series(self) -> list[tuple[str, str]]:
        """(inst_id, timeframe name) of every stored candle series, sorted."""
        return sorted(self.layout.candle_series())

    def list_funding_series(self) -> list[str]:
        """inst_ids with stored settled funding, sorted."""
        return sorted(self.layout.instrument_series(self.layout.funding_root, Period.YEAR))

    def list_funding_live_series(self) -> list[str]:
        """inst_ids with stored live funding observations, sorted."""
        return sorted(self.layout.instrument_series(self.layout.funding_live_root, Period.DAY))

    # -- repair --------------------------------------------------------------------------------

    def take_notes(self) -> list[RecoveryNote]:
        """Repairs made during reads and writes since the last call (then forgotten)."""
        return self._io.take_notes()

    def recover(self, *, deep: bool = False) -> list[RecoveryNote]:
        """At start: delete stale temp files, merge the hour files of ended days into their day
        files, move unreadable partitions aside; report what was deleted or moved.

        The default check reads each partition's footer and column names (what a crash can tear);
        `deep=True` decodes every file too.
        """
        notes: list[RecoveryNote] = []
        for series in self._series_dirs():
            notes.extend(remove_stale_temps(series.directory))
            if series.period is Period.DAY:
                notes.extend(self._io.split_month_files(series))
                self._io.compact_ended(series)  # hour files a stopped live job left behind
            for part in list_partitions(series.directory, series.period):
                path = series.path(part)
                reason = check_readable(path, series.kind.schema, deep)
                if reason is not None:
                    note = self._io.quarantine(series, path, reason, file_sig(path))
                    if note is not None:
                        notes.append(note)
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


def _valid_together(tables: list[pa.Table], timeframes: set[Timeframe]) -> bool:
    """Whether a batch of one timeframe (a live batch) passes validation as a whole: one check
    for a thousand one-row tables. False also when it cannot be checked that way."""
    if len(timeframes) != 1 or not tables:
        return False
    try:
        validate_candles(pa.concat_tables(tables), "", next(iter(timeframes)))
    except InvalidRecords:
        return False
    return True
