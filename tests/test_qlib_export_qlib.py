"""Read the export back through qlib itself (optional pyqlib): values, NaN, calendars, funding.

qlib's `init` is global per process, so qlib runs in a child process that pickles what it read;
the comparisons happen here, against the store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from okx_collector.models import FundingRate
from okx_collector.qlib_export import export_qlib
from okx_collector.store.store import Store
from okx_collector.timeframes import HOUR_MS, Timeframe
from test_qlib_export import T0, funding, grid, make, tree

pytestmark = pytest.mark.qlib

FIELDS = ["open", "high", "low", "close", "volume", "quote_volume", "vwap", "funding_rate"]
TIMEFRAMES = [Timeframe.parse(n) for n in ("1m", "15m", "1h")]

READER = textwrap.dedent(
    """
    import sys, pickle
    import qlib
    from qlib.data import D
    out, dump = sys.argv[1], sys.argv[2]
    qlib.init(provider_uri=out, region="us", kernels=1)
    fields = ["$" + f for f in sys.argv[3].split(",")]
    got = {}
    for freq in sys.argv[4].split(","):
        cal = [str(t) for t in D.calendar(freq=freq)]
        insts = D.list_instruments(D.instruments("all"), freq=freq, as_list=True)
        own = D.list_instruments(D.instruments(freq), freq=freq, as_list=True)
        df = D.features(insts, fields, freq=freq)
        got[freq] = (cal, sorted(insts), sorted(own), df.reset_index())
    with open(dump, "wb") as fh:
        pickle.dump(got, fh)
    """
)


def read_with_qlib(out: Path, tmp: Path, freqs: list[str]) -> dict[str, tuple]:  # type: ignore[type-arg]
    pytest.importorskip("qlib", reason="pyqlib is not installed (pip install okx-collector[qlib])")
    dump = tmp / "qlib-read.pkl"
    proc = subprocess.run(
        [sys.executable, "-c", READER, str(out), str(dump), ",".join(FIELDS), ",".join(freqs)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got: dict[str, tuple] = pd.read_pickle(dump)  # type: ignore[type-arg]  # noqa: S301 (ours)
    return got


def build(root: Path) -> Store:
    store = Store(root)
    for tf in TIMEFRAMES:
        n = {"1m": 3000, "15m": 400, "1h": 120}[tf.name]
        store.write_candles("BTC-USDT", tf, make(grid(tf, T0, n, drop=0.15, seed=1), 1))
        store.write_candles("BTC-USDT-SWAP", tf, make(grid(tf, T0, n, drop=0.02, seed=2), 2))
        later = T0 + 7 * tf.ms
        store.write_candles("ETH-USDT", tf, make(grid(tf, later, n // 2, drop=0.3, seed=3), 3))
    store.write_candles(
        "DOGE-USDT", Timeframe.parse("1h"), make(grid(Timeframe.parse("1h"), T0, 5))
    )
    # Settlements every 8 h from 03:00, with one 4 h interval at the end.
    rates = funding(T0 + 3 * HOUR_MS, 14)
    rates.append(FundingRate(rates[-1].funding_time + 4 * HOUR_MS, 3e-4, 3e-4, "poll"))
    store.write_funding("BTC-USDT-SWAP", rates)
    return store


def expected_funding(store: Store, opens: np.ndarray) -> np.ndarray:
    table = store.read_funding("BTC-USDT-SWAP")
    times = table.column("funding_time").to_numpy()
    rates = table.column("funding_rate").to_numpy()
    horizon = times[-1] + (times[-1] - times[-2])
    out = np.full(opens.size, np.nan, dtype=np.float32)
    for i, bar in enumerate(opens):
        k = np.searchsorted(times, bar, side="right") - 1
        if k >= 0 and bar < horizon:
            out[i] = rates[k]
    return out


def test_qlib_reads_every_value_for_1m_15m_1h(tmp_path: Path) -> None:
    store = build(tmp_path / "data")
    out = tmp_path / "qlib"
    for tf in TIMEFRAMES:
        export_qlib(store, out, tf)
    got = read_with_qlib(out, tmp_path, [tf.qlib_freq for tf in TIMEFRAMES])
    for tf in TIMEFRAMES:
        cal, insts, own, df = got[tf.qlib_freq]
        series = [i for i, name in store.list_candle_series() if name == tf.name]
        firsts = [store.first_candle_ts(i, tf) or 0 for i in series]
        lasts = [store.last_candle_ts(i, tf) or 0 for i in series]
        want_cal = pd.date_range(
            pd.Timestamp(min(firsts), unit="ms"),
            pd.Timestamp(max(lasts), unit="ms"),
            freq=f"{tf.ms}ms",
        )
        assert cal == [str(t) for t in want_cal], tf  # continuous, 24/7, UTC
        assert own == sorted(series)
        assert "DOGE-USDT" in insts  # all.txt is the union over timeframes
        for inst in series:
            rows = df[df["instrument"] == inst].set_index("datetime").sort_index()
            table = store.read_candles(inst, tf)
            ts = table.column("ts").to_numpy()
            opens = np.arange(ts[0], ts[-1] + tf.ms, tf.ms)
            assert list(rows.index) == list(pd.to_datetime(opens, unit="ms")), (tf, inst)
            present = np.isin(opens, ts)
            for field in FIELDS[:6]:
                values = rows[f"${field}"].to_numpy()
                assert values.dtype == np.float32
                np.testing.assert_array_equal(
                    values[present], table.column(field).to_numpy().astype(np.float32)
                )
                assert np.isnan(values[~present]).all(), (tf, inst, field)
            v, q = (table.column(c).to_numpy() for c in ("volume", "quote_volume"))
            with np.errstate(divide="ignore", invalid="ignore"):
                want_vwap = np.where(v != 0, q / v, np.nan).astype(np.float32)
            np.testing.assert_array_equal(rows["$vwap"].to_numpy()[present], want_vwap)
            fr = rows["$funding_rate"].to_numpy()
            if inst in ("BTC-USDT", "BTC-USDT-SWAP"):
                np.testing.assert_array_equal(fr, expected_funding(store, opens))
                assert np.isfinite(fr).sum() > 0
            else:
                assert np.isnan(fr).all()
        assert df[df["instrument"] == "DOGE-USDT"].empty or tf.name == "1h"


def test_qlib_reads_an_incrementally_updated_export(tmp_path: Path) -> None:
    store = build(tmp_path / "data")
    out = tmp_path / "qlib"
    tf = Timeframe.parse("15m")
    export_qlib(store, out, tf)
    new = grid(tf, T0 + 400 * tf.ms, 30)
    store.write_candles("BTC-USDT", tf, make(new[[1, 5, 6, 29]], 9))
    store.write_funding("BTC-USDT-SWAP", funding(T0 + 200 * HOUR_MS, 3, seed=4))
    report = export_qlib(store, out, tf)
    # The new settlements fall after the swap's last bar: its files need no change.
    assert report.appended == ("BTC-USDT",) and "BTC-USDT-SWAP" in report.unchanged
    fresh = tmp_path / "fresh"
    export_qlib(store, fresh, tf)
    assert tree(out) == tree(fresh)
    _, _, _, df = read_with_qlib(out, tmp_path, ["15min"])["15min"]
    rows = df[df["instrument"] == "BTC-USDT"].set_index("datetime")
    table = store.read_candles("BTC-USDT", tf)
    for t, close in zip(
        table.column("ts").to_numpy()[-4:], table.column("close").to_numpy()[-4:], strict=True
    ):
        assert rows.loc[pd.Timestamp(t, unit="ms"), "$close"] == np.float32(close)
    assert np.isnan(rows.loc[pd.Timestamp(new[2], unit="ms"), "$close"])


def test_qlib_reads_daily_and_weekly(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    out = tmp_path / "qlib"
    for name in ("1d", "1w"):
        tf = Timeframe.parse(name)
        start = tf.ceil(T0 - 100 * tf.ms)
        store.write_candles("BTC-USDT", tf, make(grid(tf, start, 80, drop=0.1, seed=5), 5))
        export_qlib(store, out, tf)
    assert (out / "calendars/1week.txt").exists()  # qlib's name for freq="week"
    got = read_with_qlib(out, tmp_path, ["day", "week"])
    for name in ("1d", "1w"):
        tf = Timeframe.parse(name)
        cal, _, own, df = got[tf.qlib_freq]
        table = store.read_candles("BTC-USDT", tf)
        ts = table.column("ts").to_numpy()
        opens = np.arange(ts[0], ts[-1] + tf.ms, tf.ms)
        assert cal == [str(t) for t in pd.to_datetime(opens, unit="ms")] and own == ["BTC-USDT"]
        close = df.set_index("datetime")["$close"].to_numpy()
        present = np.isin(opens, ts)
        np.testing.assert_array_equal(
            close[present], table.column("close").to_numpy().astype(np.float32)
        )
        assert np.isnan(close[~present]).all() and (~present).any()
