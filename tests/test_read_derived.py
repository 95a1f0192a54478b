"""The read API and status over mark and index candles and open interest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from okx_collector import read_candles, read_open_interest
from okx_collector.errors import BadInput
from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.read_api import SeriesNotStored
from okx_collector.status import collect_status
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z


def seed(data_dir: Path) -> Store:
    store = Store(data_dir)
    mark = [
        PriceCandle(T0 + i * 60_000, 10.0 + i, 12.0 + i, 9.0 + i, 11.0 + i, "ws") for i in range(5)
    ]
    index = [PriceCandle(T0 + i * 60_000, 20.0, 21.0, 19.0, 20.5, "ws") for i in range(5)]
    oi = [OpenInterest(T0 + i * 60_000, 100.0 + i, 1.0 + i, 9e4, "ws") for i in (1, 2, 4)]
    store.write_price_candles("mark", "BTC-USDT-SWAP", M1, mark)
    store.write_price_candles("index", "BTC-USDT", M1, index)
    store.write_open_interest("BTC-USDT-SWAP", M1, oi)
    return store


def test_read_candles_by_price_and_open_interest(tmp_path: Path) -> None:
    seed(tmp_path)
    mark = read_candles(tmp_path, "BTC/USDT:USDT", "1m", price="mark")
    assert list(mark.columns) == ["open", "high", "low", "close"]
    assert mark["close"].tolist() == [11.0, 12.0, 13.0, 14.0, 15.0]
    assert mark.index[0] == pd.Timestamp(T0, unit="ms", tz="UTC") and mark.index.name == "time"
    # A spot pair means its perpetual's mark and its own index; a perpetual its family's index.
    spot_mark = read_candles(tmp_path, "BTC/USDT", "1m", T0 + 60_000, T0 + 180_000, price="mark")
    assert spot_mark["open"].tolist() == [11.0, 12.0]
    for symbol in ("BTC/USDT", "BTC-USDT-SWAP", "BTC-USDT"):
        index = read_candles(tmp_path, symbol, "1m", price="index")
        assert index["close"].tolist() == [20.5] * 5
    oi = read_open_interest(tmp_path, "BTC/USDT:USDT", "1m", start=T0 + 60_000)
    assert list(oi.columns) == ["oi_contracts", "oi_coin", "oi_usd"]
    assert oi["oi_contracts"].tolist() == [101.0, 102.0, 104.0]
    assert oi.dtypes.tolist() == [np.float64] * 3
    with pytest.raises(SeriesNotStored, match="no mark_candles series ETH-USDT-SWAP 1m"):
        read_candles(tmp_path, "ETH/USDT:USDT", "1m", price="mark")
    with pytest.raises(SeriesNotStored, match="BTC-USDT-SWAP 1m"):
        read_open_interest(tmp_path, "BTC-USDT-SWAP", "5m")
    with pytest.raises(BadInput, match="'trade', 'mark' or 'index'"):
        read_candles(tmp_path, "BTC/USDT", "1m", price="last")  # type: ignore[arg-type]


def test_status_covers_the_new_kinds(tmp_path: Path) -> None:
    store = seed(tmp_path)
    now = T0 + 10 * 60_000
    statuses = {s.name: s for s in collect_status(store, now)}
    assert set(statuses) == {"BTC-USDT-SWAP 1m mark", "BTC-USDT 1m index", "BTC-USDT-SWAP 1m oi"}
    mark = statuses["BTC-USDT-SWAP 1m mark"].coverage
    assert (mark.rows, mark.gap_count, mark.behind) == (5, 0, 5)  # bars 5..9 closed, not stored
    assert mark.age_ms == now - (T0 + 5 * 60_000)  # since the newest candle closed
    oi = statuses["BTC-USDT-SWAP 1m oi"].coverage
    assert (oi.rows, oi.gap_count, oi.missing) == (3, 1, 1)  # the close at T0+3m is missing
    assert oi.age_ms == now - (T0 + 4 * 60_000) and oi.behind == 6  # the instant itself
