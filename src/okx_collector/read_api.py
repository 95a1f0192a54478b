"""The public read API: a stored series as a pandas DataFrame indexed by UTC time.

    from okx_collector import read_candles, read_funding
    df = read_candles("data", "BTC/USDT", "1m", start="2026-11-01", end="2026-11-08")

Reads go through the store, so they see everything a running `collect` has written (the files
it has not merged yet included), deduplicated, and never change a file. A series that is not
stored at all is an error naming what is stored; a stored series with nothing in the range is
an empty frame with the usual columns.
"""

from __future__ import annotations

import difflib
import numbers
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from okx_collector.errors import BadInput
from okx_collector.instruments import guess_inst_id
from okx_collector.store import Store
from okx_collector.store.layout import INST_ID_RE
from okx_collector.store.schema import INDEX_CANDLES, MARK_CANDLES, OPEN_INTEREST, Kind
from okx_collector.timeframes import Timeframe, UnknownTimeframe

__all__ = [
    "CANDLE_COLUMNS",
    "FUNDING_COLUMNS",
    "OPEN_INTEREST_COLUMNS",
    "PRICE_CANDLE_COLUMNS",
    "Price",
    "SeriesNotStored",
    "read_candles",
    "read_funding",
    "read_open_interest",
]

#: Columns of `read_candles`, in order (index: `time`, the candle's open time, UTC).
CANDLE_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume")
#: Columns of `read_candles(..., price="mark" | "index")`: OKX sends no volume for them.
PRICE_CANDLE_COLUMNS = ("open", "high", "low", "close")
#: Columns of `read_open_interest` (index: `time`, the bar close the values were in force at).
OPEN_INTEREST_COLUMNS = ("oi_contracts", "oi_coin", "oi_usd")
#: Which price `read_candles` reads: last trades, OKX's mark price, or the index.
Price: TypeAlias = Literal["trade", "mark", "index"]
_PRICE_KINDS: dict[str, Kind] = {"mark": MARK_CANDLES, "index": INDEX_CANDLES}
#: Columns of `read_funding` (index: `time`, the settlement's funding time, UTC).
FUNDING_COLUMNS = ("funding_rate", "realized_rate")

TimeLike: TypeAlias = datetime | pd.Timestamp | str | int | None

KEPT_STORES = 2  # data dirs whose `Store` is kept, each with <= 32 MB of decoded journal files
_STORES: OrderedDict[Path, Store] = OrderedDict()
_STORES_LOCK = threading.Lock()  # guards _STORES (reads may come from several threads)


class SeriesNotStored(BadInput, LookupError):
    """The dataset holds no such series (the message names the closest stored ones)."""


def read_candles(
    data_dir: Path | str,
    symbol: str,
    timeframe: str | Timeframe,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    price: Price = "trade",
) -> pd.DataFrame:
    """Closed candles of one series with open time in [start, end).

    `symbol` is a ccxt symbol (`BTC/USDT`, `BTC/USDT:USDT`) or an OKX instId (`BTC-USDT-SWAP`);
    `timeframe` a ccxt timeframe (`1m`, `15m`, `1h`, `1d`); `start`/`end` datetimes (naive ones
    are UTC), ISO strings, or epoch milliseconds. Returns float64 columns `CANDLE_COLUMNS`
    (`volume` in base currency, or contracts for a perpetual; `quote_volume` in quote currency)
    indexed by a UTC DatetimeIndex named `time`, sorted and unique.

    `price="mark"` reads the mark-price candles of the perpetual (a spot pair's: its linear
    perpetual, `BTC/USDT` -> `BTC-USDT-SWAP`), `price="index"` the candles of the index behind
    the symbol (`BTC/USDT`, `BTC/USDT:USDT` and `BTC-USDT` -> index `BTC-USDT`); both have the
    columns `PRICE_CANDLE_COLUMNS` (no volume).
    """
    store = _store(data_dir)
    inst_id = guess_inst_id(symbol)
    tf = timeframe if isinstance(timeframe, Timeframe) else _timeframe(timeframe)
    if price != "trade":
        kind = _PRICE_KINDS.get(price)
        if kind is None:
            raise BadInput(f"price={price!r}: use 'trade', 'mark' or 'index'")
        series_id = _perpetual(inst_id) if price == "mark" else _index(inst_id)
        table = _read_kind(store, kind, series_id, tf, start, end)
        return _frame(table, "ts", PRICE_CANDLE_COLUMNS)
    lo, hi = _ms(start, "start"), _ms(end, "end")
    wanted = f"{inst_id} {tf.name}"
    table = None
    if INST_ID_RE.fullmatch(inst_id):  # (else not a series of any store: said below)
        table = store.read_candles(inst_id, tf, lo, hi, columns=["ts", *CANDLE_COLUMNS])
    if table is None or table.num_rows == 0:
        # Only now list the store (a scan of every series' folder): rows prove the series is
        # there, and an empty answer must say whether the series is stored at all.
        stored = {f"{i} {t}" for i, t in store.list_candle_series()}
        if wanted not in stored or table is None:
            raise SeriesNotStored(_not_stored("candles", wanted, stored, store.data_dir))
    return _frame(table, "ts", CANDLE_COLUMNS)


def read_funding(
    data_dir: Path | str,
    symbol: str,
    start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:
    """Settled funding rates of one perpetual with funding time in [start, end).

    `symbol` is the perpetual (`BTC/USDT:USDT` or `BTC-USDT-SWAP`). Returns float64 columns
    `FUNDING_COLUMNS` (the rate OKX settled at, and the realized rate) indexed by a UTC
    DatetimeIndex named `time`, sorted and unique.
    """
    store = _store(data_dir)
    inst_id = guess_inst_id(symbol)
    stored = set(store.list_funding_series())
    if inst_id not in stored:
        raise SeriesNotStored(_not_stored("funding", inst_id, stored, store.data_dir))
    table = store.read_funding(inst_id, _ms(start, "start"), _ms(end, "end"))
    return _frame(table, "funding_time", FUNDING_COLUMNS)


def read_open_interest(
    data_dir: Path | str,
    symbol: str,
    timeframe: str | Timeframe,
    start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:
    """Open interest of one perpetual at the bar closes of `timeframe`, with instants in
    [start, end).

    `symbol` is the perpetual (`BTC/USDT:USDT`, `BTC-USDT-SWAP`; a spot pair means its linear
    perpetual). Returns float64 columns `OPEN_INTEREST_COLUMNS` (contracts, base currency, USD)
    indexed by a UTC DatetimeIndex named `time`: the instant the values were in force (a bar's
    close, the next bar's open time), sorted and unique.
    """
    store = _store(data_dir)
    tf = timeframe if isinstance(timeframe, Timeframe) else _timeframe(timeframe)
    inst_id = _perpetual(guess_inst_id(symbol))
    table = _read_kind(store, OPEN_INTEREST, inst_id, tf, start, end)
    return _frame(table, "ts", OPEN_INTEREST_COLUMNS)


def _perpetual(inst_id: str) -> str:
    """The perpetual of an instId: itself, or a spot pair's linear perpetual."""
    return inst_id if inst_id.endswith("-SWAP") else f"{inst_id}-SWAP"


def _index(inst_id: str) -> str:
    """The index behind an instId: a spot pair's own id, a perpetual's family (`BTC-USDT`)."""
    return inst_id.removesuffix("-SWAP")


def _read_kind(
    store: Store, kind: Kind, series_id: str, tf: Timeframe, start: TimeLike, end: TimeLike
) -> pa.Table:
    stored = {f"{i} {t}" for i, t in store.list_kind_series(kind)}
    wanted = f"{series_id} {tf.name}"
    if wanted not in stored:
        raise SeriesNotStored(_not_stored(kind.name, wanted, stored, store.data_dir))
    return store.read_kind(kind, series_id, tf, _ms(start, "start"), _ms(end, "end"))


def _store(data_dir: Path | str) -> Store:
    """The data dir's `Store`, kept between calls: it caches the journal files it decoded
    (they never change), and a live run keeps up to 16 of them, ~0.5 ms each to decode, so a
    week's read paid ~8 ms for them at every call. Reads list the files every time, so a kept
    store sees every write."""
    path = Path(data_dir)
    if not path.is_dir():
        raise BadInput(f"no dataset at {str(path)!r}: pass the DATA_DIR that backfill wrote")
    key = path.resolve()
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None or store.data_dir != path:
            store = _STORES[key] = Store(path)
            while len(_STORES) > KEPT_STORES:
                _STORES.popitem(last=False)
        _STORES.move_to_end(key)
    return store


def _timeframe(name: str) -> Timeframe:
    try:
        return Timeframe.parse(name)
    except UnknownTimeframe as exc:
        raise BadInput(str(exc)) from exc


def _ms(value: TimeLike, name: str) -> int | None:
    """Epoch milliseconds of a user's time bound (None: unbounded)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput(f"{name}={value!r} is not a time: pass a datetime, ISO string or epoch ms")
    if isinstance(value, numbers.Integral):  # numpy integers too: pandas would read them as ns
        return int(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BadInput(
            f"{name}={value!r} is not a time: pass a datetime, an ISO string "
            f"(2026-11-01 or 2026-11-01T12:00Z) or epoch milliseconds"
        ) from exc
    if stamp is pd.NaT:
        raise BadInput(f"{name}={value!r} is not a time")
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return int(stamp.value // 1_000_000)


def _frame(table: pa.Table, time_column: str, columns: tuple[str, ...]) -> pd.DataFrame:
    times = table.column(time_column).to_numpy()
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="time")
    # The float columns copied once, chunk by chunk, into the one 2-D block pandas keeps them
    # in (a dict of columns is copied twice: concatenated, then stacked): 11 ms, not 20, a year.
    block = np.empty((len(columns), table.num_rows), dtype=np.float64)
    for row, name in enumerate(columns):
        at = 0
        for chunk in table.column(name).chunks:
            block[row, at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
            at += len(chunk)
    return pd.DataFrame(block.T, index=index, columns=list(columns), copy=False)


def _not_stored(kind: str, wanted: str, stored: set[str], data_dir: Path) -> str:
    if not stored:
        return f"no {kind} stored in {str(data_dir)!r}: run `okx-collector backfill` first"
    close = difflib.get_close_matches(wanted, sorted(stored), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"no {kind} series {wanted} in {str(data_dir)!r}{hint} ({len(stored)} stored)"
