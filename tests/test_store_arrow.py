"""The store's pandas-free numpy <-> Arrow conversions, and that the store stays pandas-free."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from okx_collector.store.arrow import (
    empty_table,
    float64s,
    int64s,
    present,
    repeated,
    strings,
    to_float64,
    to_int64,
)


def test_arrays_equal_pyarrows_own() -> None:
    assert int64s([1, None, -3]).equals(pa.array([1, None, -3], pa.int64()))
    assert int64s(np.array([5, 6], dtype=np.int64)).equals(pa.array([5, 6], pa.int64()))
    floats = float64s([1.5, None, float("nan")])
    assert floats.type == pa.float64() and floats.null_count == 1
    assert floats.to_pylist()[:2] == [1.5, None] and np.isnan(floats.to_pylist()[2])
    assert strings(["ws", "", "backfill", "é"]).equals(pa.array(["ws", "", "backfill", "é"]))
    assert repeated("BTC-USDT", 3).equals(pa.array(["BTC-USDT"] * 3))
    assert repeated("x", 0).equals(pa.array([], pa.string()))
    assert strings([]).equals(pa.array([], pa.string()))


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 100])
def test_round_trips_with_nulls_slices_and_chunks(n: int) -> None:
    rng = np.random.default_rng(n)
    ints = [None if rng.random() < 0.3 else int(v) for v in rng.integers(-(2**40), 2**40, n)]
    floats = [None if rng.random() < 0.3 else float(v) for v in rng.normal(size=n)]
    a, b = int64s(ints), float64s(floats)
    assert a.to_pylist() == ints and b.to_pylist() == floats
    mask = np.array([v is not None for v in ints], dtype=np.bool_)
    assert present(a).tolist() == mask.tolist()
    assert to_int64(a)[mask].tolist() == [v for v in ints if v is not None]
    got = to_float64(b)
    assert [None if np.isnan(x) else x for x in got] == floats
    # slices (an offset into the buffers) and several chunks
    for lo in range(min(n, 10)):
        assert to_int64(a.slice(lo))[mask[lo:]].tolist() == [v for v in ints[lo:] if v is not None]
        assert present(a.slice(lo)).tolist() == mask[lo:].tolist()
    chunked = pa.chunked_array([a.slice(0, n // 2), a.slice(n // 2)], pa.int64())
    assert present(chunked).tolist() == mask.tolist()
    assert to_int64(chunked)[mask].tolist() == [v for v in ints if v is not None]


def test_empty_table_keeps_the_schema() -> None:
    schema = pa.schema([pa.field("ts", pa.int64(), nullable=False), pa.field("s", pa.string())])
    table = empty_table(schema)
    assert table.num_rows == 0 and table.schema.equals(schema)


def test_writing_and_reading_the_store_never_imports_pandas_or_rich(tmp_path: Path) -> None:
    """pandas is 40 MB of a live job's memory, rich 2.3 MB: the store's paths and collect must not
    pull them in."""
    script = textwrap.dedent(
        f"""
        import sys
        from okx_collector.live.run import collect_async  # noqa: F401  (what collect imports)
        from okx_collector.models import Candle, FundingObservation, FundingRate
        from okx_collector.store import Store
        from okx_collector.timeframes import Timeframe

        store = Store({str(tmp_path)!r})
        base = 1_793_491_200_000
        for tf in (Timeframe.parse("1m"), Timeframe.parse("15m")):
            rows = [Candle(base + i * tf.ms, 1.0, 2.0, 0.5, 1.5, 1.0, 1.5, "ws") for i in range(5)]
            store.write_candles_many([("BTC-USDT", tf, rows)])
            store.write_candles("BTC-USDT", tf, [rows[1]._replace(close=1.25, source="poll")])
            store.read_candles("BTC-USDT", tf)
            store.candle_timestamps("BTC-USDT", tf)
            store.last_candle_ts("BTC-USDT", tf)
        store.write_funding("BTC-USDT-SWAP", [FundingRate(base, 1e-4, 1e-4, "poll")])
        store.write_funding_live(
            "BTC-USDT-SWAP", [FundingObservation(base, base, 1e-4, None, None, "ws")]
        )
        store.funding_times("BTC-USDT-SWAP")
        store.read_funding_live("BTC-USDT-SWAP")
        store.recover(deep=True)
        print("pandas" in sys.modules or "rich" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr
