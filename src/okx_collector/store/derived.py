"""Mark-price candles, index candles and open interest in the store (`Store` inherits these).

    DATA_DIR/mark_candles/{instId}/{timeframe}/{partition}.parquet    perpetuals (BTC-USDT-SWAP)
    DATA_DIR/index_candles/{indexId}/{timeframe}/{partition}.parquet  indexes (BTC-USDT)
    DATA_DIR/open_interest/{instId}/{timeframe}/{partition}.parquet   perpetuals, at bar closes

Each is a series per (id, timeframe), like trade candles: written through the same journal,
compacted by the same rule, partitioned by the same spans (`layout.candle_period`, so that a
change of partition sizes applies to them too), read as partitions plus journal. Only the schema
and the checks differ (`schema.TIMEFRAME_KINDS`, `validate`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.store.arrow import to_int64
from okx_collector.store.journal import JournalKind, JournalWriter
from okx_collector.store.layout import (
    INST_ID_RE,
    candle_period,
    list_partitions,
    validate_inst_id,
    validate_timeframe,
)
from okx_collector.store.schema import (
    INDEX_CANDLES,
    MARK_CANDLES,
    OPEN_INTEREST,
    TIMEFRAME_KINDS,
    Kind,
    open_interest_batch,
    price_candles_batch,
)
from okx_collector.store.series import Series
from okx_collector.store.union import UnionReader
from okx_collector.store.validate import (
    valid_together,
    validate_open_interest,
    validate_price_candles,
)
from okx_collector.timeframes import VALID_TIMEFRAMES, Timeframe

PriceKind = Literal["mark", "index"]
PRICE_KIND: dict[PriceKind, Kind] = {"mark": MARK_CANDLES, "index": INDEX_CANDLES}
R = TypeVar("R", PriceCandle, OpenInterest)


class DerivedStore:
    """The `Store` methods of the kinds in `schema.TIMEFRAME_KINDS` (a mixin: `Store` sets the
    attributes below in its `__init__`)."""

    data_dir: Path
    _journal: JournalWriter
    _union: UnionReader
    _tf_series: dict[tuple[str, str, Timeframe], Series]
    _tf_series_lock: threading.Lock

    def kind_series(self, kind: Kind, series_id: str, tf: Timeframe) -> Series:
        """The series of `kind` for an instrument (or index) id and a timeframe (validated:
        only well-formed ids and known timeframes become path components)."""
        key = (kind.name, series_id, tf)
        found = self._tf_series.get(key)
        if found is None:
            tf = validate_timeframe(tf)
            directory = self.data_dir / kind.name / validate_inst_id(series_id) / tf.name
            found = Series(directory, kind, candle_period(tf), f"{kind.name} {series_id} {tf}")
            with self._tf_series_lock:
                self._tf_series[key] = found
        return found

    # -- writing -------------------------------------------------------------------------------

    def write_price_candles(
        self, price: PriceKind, series_id: str, tf: Timeframe, candles: Sequence[PriceCandle]
    ) -> int:
        """Append closed mark candles (`series_id` a perpetual) or index candles (an index id,
        `BTC-USDT`) to the journal; durable on return, the batch validated first (raises
        `InvalidRecords`, writing nothing). Returns the rows written."""
        return self.write_price_candles_many(price, [(series_id, tf, candles)])

    def write_price_candles_many(
        self, price: PriceKind, items: Sequence[tuple[str, Timeframe, Sequence[PriceCandle]]]
    ) -> int:
        """`write_price_candles` for many series: one journal file (all validated first)."""
        kind = PRICE_KIND[price]
        return self._write_kind(kind, items, price_candles_batch, validate_price_candles)

    def write_open_interest(self, inst_id: str, tf: Timeframe, rows: Sequence[OpenInterest]) -> int:
        """Append open interest sampled at `tf` bar closes (`ts` = the close instant)."""
        return self.write_open_interest_many([(inst_id, tf, rows)])

    def write_open_interest_many(
        self, items: Sequence[tuple[str, Timeframe, Sequence[OpenInterest]]]
    ) -> int:
        """`write_open_interest` for many series: one journal file (all validated first)."""
        return self._write_kind(OPEN_INTEREST, items, open_interest_batch, validate_open_interest)

    def _write_kind(
        self,
        kind: Kind,
        items: Sequence[tuple[str, Timeframe, Sequence[R]]],
        to_batch: Callable[[Sequence[tuple[str, str, Sequence[R]]]], pa.Table],
        validate: Callable[[pa.Table, str, Timeframe], None],
    ) -> int:
        """Every series' rows as one table, validated (raises `InvalidRecords` naming the
        series, writing nothing), appended to the journal as one file. Returns the rows.

        A live close of a thousand one-row series is built and checked as one table (~1 ms);
        a table per series cost 80-170 ms on the writer's thread, holding the GIL."""
        labels = [self.kind_series(kind, sid, tf).label for sid, tf, _ in items]  # valid names
        named = [(sid, tf.name, rows) for sid, tf, rows in items if rows]
        if not named:
            return 0
        batch = to_batch(named)
        if not valid_together(batch, {tf for _, tf, rows in items if rows}, validate):
            for label, (sid, tf, rows) in zip(labels, items, strict=True):
                validate(to_batch([(sid, tf.name, rows)]), label, tf)  # raises, naming it
        name: JournalKind = kind.name  # type: ignore[assignment]  # one of schema.ALL_KINDS
        self._journal.append(name, batch)
        return int(batch.num_rows)

    # -- reading -------------------------------------------------------------------------------

    def read_kind(
        self,
        kind: Kind,
        series_id: str,
        tf: Timeframe,
        start: int | None = None,
        end: int | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Rows of the series with `ts` in [start, end), sorted (partitions plus journal)."""
        series = self.kind_series(kind, series_id, tf)
        return self._union.read(series, (series_id, tf.name), start, end, columns)

    def read_price_candles(
        self,
        price: PriceKind,
        series_id: str,
        tf: Timeframe,
        start: int | None = None,
        end: int | None = None,
    ) -> pa.Table:
        """Mark or index candles with open time in [start, end), sorted by `ts`."""
        return self.read_kind(PRICE_KIND[price], series_id, tf, start, end)

    def read_open_interest(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """Open interest at `tf` bar closes with `ts` in [start, end), sorted."""
        return self.read_kind(OPEN_INTEREST, inst_id, tf, start, end)

    def kind_timestamps(
        self,
        kind: Kind,
        series_id: str,
        tf: Timeframe,
        start: int | None = None,
        end: int | None = None,
    ) -> npt.NDArray[np.int64]:
        """Stored `ts` in [start, end): int64, sorted, unique."""
        return to_int64(self.read_kind(kind, series_id, tf, start, end, ["ts"]).column("ts"))

    def kind_edge(self, kind: Kind, series_id: str, tf: Timeframe, *, newest: bool) -> int | None:
        """The newest (or oldest) stored `ts` of the series."""
        series = self.kind_series(kind, series_id, tf)
        return self._union.edge(series, (series_id, tf.name), newest=newest)

    def list_kind_series(self, kind: Kind) -> list[tuple[str, str]]:
        """(id, timeframe name) of every stored series of `kind`, sorted."""
        stored = {(s.directory.parent.name, s.directory.name) for s in self._kind_dirs(kind)}
        return sorted(stored | self._union.journal_series(kind))

    def _kind_dirs(self, kind: Kind) -> Iterator[Series]:
        """Every series directory of `kind` on disk holding a partition."""
        for id_dir in _subdirs(self.data_dir / kind.name):
            if not INST_ID_RE.fullmatch(id_dir.name):
                continue
            for tf_dir in _subdirs(id_dir):
                if tf_dir.name not in VALID_TIMEFRAMES:
                    continue
                period = candle_period(Timeframe.parse(tf_dir.name))
                if list_partitions(tf_dir, period):
                    yield Series(tf_dir, kind, period, f"{kind.name} {id_dir.name} {tf_dir.name}")

    def _derived_dirs(self) -> Iterator[Series]:
        for kind in TIMEFRAME_KINDS:
            yield from self._kind_dirs(kind)


def _subdirs(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
