"""export-qlib's mark, index and open-interest fields, read back through qlib itself at float32:
spot pairs take their perpetual's mark and open interest and their own index; NaN where nothing
is stored; an unchanged export rewrites nothing; incremental equals fresh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.qlib_export import export_qlib
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe
from test_qlib_export import T0, grid, make, tree
from test_qlib_export_qlib import READER

M15 = Timeframe.parse("15m")
DERIVED = [
    *(f"mark_{c}" for c in ("open", "high", "low", "close")),
    *(f"index_{c}" for c in ("open", "high", "low", "close")),
    "open_interest",
]


def prices(ts: np.ndarray, seed: int) -> list[PriceCandle]:
    rng = np.random.default_rng(seed)
    out = []
    for t in ts:
        o, c = 100 + rng.random(), 100 + rng.random()  # float64 values that float32 rounds
        out.append(PriceCandle(int(t), o, max(o, c) + rng.random(), min(o, c) - 0.5, c, "ws"))
    return out


def build(root: Path) -> Store:
    store = Store(root)
    for inst, seed in (("BTC-USDT", 1), ("BTC-USDT-SWAP", 2), ("ETH-USDT", 3)):
        store.write_candles(inst, M15, make(grid(M15, T0, 200, drop=0.1, seed=seed), seed))
    store.write_price_candles("mark", "BTC-USDT-SWAP", M15, prices(grid(M15, T0, 180, 0.2, 4), 4))
    store.write_price_candles("index", "BTC-USDT", M15, prices(grid(M15, T0, 190, 0.1, 5), 5))
    closes = grid(M15, T0 + M15.ms, 150, drop=0.1, seed=6)
    oi = [OpenInterest(int(t), 1e5 + i * 1.37, 1e3 + i, 9e7, "ws") for i, t in enumerate(closes)]
    store.write_open_interest("BTC-USDT-SWAP", M15, oi)
    return store


def read_with_qlib(out: Path, tmp: Path) -> pd.DataFrame:
    pytest.importorskip("qlib", reason="pyqlib is not installed (pip install okx-collector[qlib])")
    dump = tmp / "qlib-read.pkl"
    fields = ",".join(["close", *DERIVED])
    proc = subprocess.run(
        [sys.executable, "-c", READER, str(out), str(dump), fields, M15.qlib_freq],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = pd.read_pickle(dump)  # noqa: S301 (ours)
    return got[M15.qlib_freq][3]


def expected(store: Store, inst: str, opens: np.ndarray) -> dict[str, np.ndarray]:
    """What each derived field must hold for `inst` at each bar open, at float32."""
    out = {f: np.full(opens.size, np.nan, dtype=np.float32) for f in DERIVED}
    perp = inst if inst.endswith("-SWAP") else f"{inst}-SWAP"
    sources = [
        ("mark", store.read_price_candles("mark", perp, M15), 0),
        ("index", store.read_price_candles("index", inst.removesuffix("-SWAP"), M15), 0),
    ]
    for group, table, _ in sources:
        where = {int(t): i for i, t in enumerate(table.column("ts").to_pylist())}
        for c in ("open", "high", "low", "close"):
            col = table.column(c).to_pylist()
            for k, bar in enumerate(opens):
                if int(bar) in where:
                    out[f"{group}_{c}"][k] = np.float32(col[where[int(bar)]])
    oi = store.read_open_interest(perp, M15)
    at = dict(zip(oi.column("ts").to_pylist(), oi.column("oi_contracts").to_pylist(), strict=True))
    for k, bar in enumerate(opens):
        value = at.get(int(bar) + M15.ms)  # the value at the bar's close
        if value is not None:
            out["open_interest"][k] = np.float32(value)
    return out


@pytest.mark.qlib
def test_qlib_reads_the_derived_fields_exactly(tmp_path: Path) -> None:
    store = build(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    df = read_with_qlib(out, tmp_path)
    for inst in ("BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT"):
        rows = df[df["instrument"] == inst].set_index("datetime").sort_index()
        ts = store.read_candles(inst, M15).column("ts").to_numpy()
        opens = np.arange(ts[0], ts[-1] + M15.ms, M15.ms)
        assert list(rows.index) == list(pd.to_datetime(opens, unit="ms"))
        want = expected(store, inst, opens)
        for field in DERIVED:
            got = rows[f"${field}"].to_numpy()
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want[field], err_msg=f"{inst} {field}")
        if inst == "ETH-USDT":  # nothing stored for it: NaN throughout, files present
            assert all(np.isnan(rows[f"${f}"].to_numpy()).all() for f in DERIVED)
        else:
            assert all(np.isfinite(rows[f"${f}"].to_numpy()).sum() > 100 for f in DERIVED)


def test_an_unchanged_export_rewrites_nothing_and_an_update_equals_a_fresh_one(
    tmp_path: Path,
) -> None:
    store = build(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["timeframes"]["15m"]["instruments"]["BTC-USDT"]
    assert sorted(entry["derived"]) == sorted(f"features/btc-usdt/{f}.15min.bin" for f in DERIVED)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")}
    again = export_qlib(store, out, M15)
    assert set(again.unchanged) == {"BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")} == mtimes
    # A revised mark candle and new bars: the update equals a fresh export, byte for byte.
    store.write_price_candles("mark", "BTC-USDT-SWAP", M15, prices(np.array([T0]), 9))
    store.write_candles("BTC-USDT", M15, make(grid(M15, T0 + 200 * M15.ms, 5), 7))
    report = export_qlib(store, out, M15)
    assert "BTC-USDT" in report.appended and "BTC-USDT-SWAP" in report.appended
    fresh = tmp_path / "fresh"
    export_qlib(store, fresh, M15)
    assert tree(out) == tree(fresh)
