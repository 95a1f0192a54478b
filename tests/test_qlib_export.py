"""The qlib export against a real store: layout, values, incremental = full, crashes, errors.

Files are read back with numpy (qlib's own reading is in test_qlib_export_qlib.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from okx_collector.errors import BadInput, EnvironmentProblem
from okx_collector.models import Candle, FundingRate
from okx_collector.qlib_export import ExportReport, export_qlib, outdir
from okx_collector.qlib_export.calendar import format_time
from okx_collector.qlib_export.manifest import calendar_path, journal_path
from okx_collector.store.store import Store
from okx_collector.timeframes import HOUR_MS, MINUTE_MS, Timeframe, UnknownTimeframe

T0 = 1_706_572_800_000  # 2024-01-30 00:00 UTC: the data crosses a month boundary
M15 = Timeframe.parse("15m")
H1 = Timeframe.parse("1h")
M1 = Timeframe.parse("1m")
FIELDS = ("open", "high", "low", "close", "volume", "quote_volume")


def make(ts: Sequence[int] | np.ndarray, seed: int = 0) -> list[Candle]:
    """Valid candles at `ts`; every 7th has no volume (vwap NaN)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, t in enumerate(np.asarray(ts, dtype=np.int64)):
        o, c = 100 + rng.random(), 100 + rng.random()
        v = 0.0 if i % 7 == 3 else float(rng.random() * 5)
        hi, lo = max(o, c) + rng.random(), min(o, c) - rng.random()
        out.append(Candle(int(t), o, hi, lo, c, v, v * (o + c) / 2, "backfill"))
    return out


def grid(tf: Timeframe, start: int, n: int, drop: float = 0.0, seed: int = 0) -> np.ndarray:
    ts = start + tf.ms * np.arange(n, dtype=np.int64)
    if drop:
        ts = ts[np.random.default_rng(seed).random(n) >= drop]
    return ts


def funding(start: int, n: int, seed: int = 0, every: int = 8 * HOUR_MS) -> list[FundingRate]:
    rng = np.random.default_rng(seed)
    return [
        FundingRate(start + every * i, float(r), float(r), "backfill")
        for i, r in enumerate(rng.normal(0, 1e-4, n))
    ]


def tree(d: Path) -> dict[str, bytes]:
    """Every file qlib or a user sees (hidden bookkeeping files excluded), by relative path."""
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts)
    }


def read_bin(path: Path) -> tuple[int, np.ndarray]:
    a = np.fromfile(path, dtype="<f4")
    return int(a[0]), a[1:]


def base_store(root: Path) -> Store:
    """BTC-USDT (gaps, funding via its swap), BTC-USDT-SWAP, ETH-USDT (later start, no funding)."""
    store = Store(root)
    store.write_candles("BTC-USDT", M15, make(grid(M15, T0, 500, drop=0.1, seed=1), 1))
    store.write_candles("BTC-USDT-SWAP", M15, make(grid(M15, T0, 500), 2))
    store.write_candles("ETH-USDT", M15, make(grid(M15, T0 + 40 * M15.ms, 400, 0.05, 3), 3))
    store.write_funding("BTC-USDT-SWAP", funding(T0 + 3 * HOUR_MS, 12))
    return store


def check_against_store(store: Store, out: Path, tf: Timeframe) -> None:
    """Every file value equals the stored candle at float32, NaN exactly where none is stored."""
    freq = tf.qlib_freq
    cal = (out / calendar_path(freq)).read_text().splitlines()
    manifest = json.loads((out / "manifest.json").read_text())
    section = manifest["timeframes"][tf.name]
    cal_first = section["calendar"]["first_ms"]
    assert cal[0] == section["calendar"]["first"] and len(cal) == section["calendar"]["bars"]
    for inst, entry in section["instruments"].items():
        table = store.read_candles(inst, tf)
        ts = table.column("ts").to_numpy()
        first, last = int(ts[0]), int(ts[-1])
        assert (entry["first_ms"], entry["last_ms"], entry["rows"]) == (first, last, ts.size)
        slots = (ts - first) // tf.ms
        n = (last - first) // tf.ms + 1
        present = np.zeros(n, dtype=bool)
        present[slots] = True
        for field in FIELDS:
            start, values = read_bin(out / "features" / inst.lower() / f"{field}.{freq}.bin")
            assert start == (first - cal_first) // tf.ms == entry["start_index"]
            assert cal[start] == entry["first"]
            assert values.size == n
            np.testing.assert_array_equal(
                values[slots], table.column(field).to_numpy().astype(np.float32)
            )
            assert np.isnan(values[~present]).all()
        _, vw = read_bin(out / "features" / inst.lower() / f"vwap.{freq}.bin")
        v = table.column("volume").to_numpy()
        q = table.column("quote_volume").to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            want = np.where(v != 0, q / v, np.nan).astype(np.float32)
        np.testing.assert_array_equal(vw[slots], want)
        assert np.isnan(vw[~present]).all()


def test_full_export_layout_values_and_manifest(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    lines: list[str] = []
    report = export_qlib(store, out, M15, progress=lines.append)
    assert isinstance(report, ExportReport)
    assert report.instruments == ("BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT")
    assert report.rewritten == report.instruments and not report.appended
    assert report.calendar_first == T0 and report.bars == 500
    assert len(lines) == 3 and "BTC-USDT 15m: rewritten" in lines[0]
    check_against_store(store, out, M15)

    cal = (out / "calendars/15min.txt").read_text().splitlines()
    assert cal[0] == "2024-01-30 00:00:00" and cal[-1] == "2024-02-04 04:45:00"
    assert all(len(c) == 19 for c in cal) and len(set(cal)) == len(cal) == 500
    eth = store.read_candles("ETH-USDT", M15).column("ts").to_numpy()
    assert (out / "instruments/all.txt").read_text().splitlines()[2] == (
        f"ETH-USDT\t{format_time(int(eth[0]))}\t{format_time(int(eth[-1]))}"
    )
    assert format_time(int(eth[0])) == "2024-01-30 10:00:00"
    assert (out / "instruments/15min.txt").read_bytes() == (
        out / "instruments/all.txt"
    ).read_bytes()
    assert not (out / "features/eth-usdt/funding_rate.15min.bin").exists()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "okx-collector-qlib" and manifest["format_version"] == 2
    section = manifest["timeframes"]["15m"]
    assert section["store"] == str((tmp_path / "data").resolve())
    btc = section["instruments"]["BTC-USDT"]
    assert btc["funding"]["source"] == "BTC-USDT-SWAP" and btc["funding"]["rows"] == 12
    assert btc["missing"] == btc["bars"] - btc["rows"] > 0 and btc["gaps"] > 0
    assert sorted(btc["months"]) == ["2024-01", "2024-02"]
    for rel, f in btc["files"].items():
        data = (out / rel).read_bytes()
        assert f == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    cal_file = section["files"]["calendars/15min.txt"]
    assert (
        cal_file["sha256"] == hashlib.sha256((out / "calendars/15min.txt").read_bytes()).hexdigest()
    )


def test_funding_rate_for_the_swap_and_its_spot(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    settled = store.read_funding("BTC-USDT-SWAP")
    times = settled.column("funding_time").to_numpy()
    rates = settled.column("funding_rate").to_numpy()
    for inst in ("BTC-USDT", "BTC-USDT-SWAP"):
        table = store.read_candles(inst, M15)
        first = int(table.column("ts").to_numpy()[0])
        _, values = read_bin(out / "features" / inst.lower() / "funding_rate.15min.bin")
        for i, v in enumerate(values):
            bar = first + i * M15.ms
            past = [k for k, t in enumerate(times) if t <= bar]
            if not past or bar >= times[-1] + (times[-1] - times[-2]):
                assert np.isnan(v), (inst, i)
            else:
                assert v == np.float32(rates[past[-1]]), (inst, i)


def test_exports_are_deterministic(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    export_qlib(store, tmp_path / "a", M15)
    export_qlib(store, tmp_path / "b", M15)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert "manifest.json" in tree(tmp_path / "a")


def incremental_matches_full(
    tmp_path: Path, store: Store, out: Path, tf: Timeframe, name: str, **kw: object
) -> ExportReport:
    report = export_qlib(store, out, tf, **kw)  # type: ignore[arg-type]
    fresh = tmp_path / f"fresh-{name}"
    export_qlib(store, fresh, tf, **kw)  # type: ignore[arg-type]
    assert tree(out) == tree(fresh), name
    check_against_store(store, out, tf)
    return report


def test_incremental_appends_and_equals_a_full_export(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    first_size = (out / "features/btc-usdt/close.15min.bin").stat().st_size

    # Nothing new: nothing written.
    r = incremental_matches_full(tmp_path, store, out, M15, "same")
    assert r.unchanged == r.instruments and r.slots_written == 0

    # New bars with holes in the batch, for two of the three instruments, and new funding.
    new = grid(M15, T0 + 500 * M15.ms, 300)
    store.write_candles("BTC-USDT", M15, make(new[[3, 4, 10, 200, 299]], 5))
    store.write_candles("BTC-USDT-SWAP", M15, make(new[::2], 6))
    store.write_funding("BTC-USDT-SWAP", funding(T0 + 99 * HOUR_MS, 4, seed=7))
    r = incremental_matches_full(tmp_path, store, out, M15, "append")
    assert r.appended == ("BTC-USDT", "BTC-USDT-SWAP") and r.unchanged == ("ETH-USDT",)
    assert r.slots_written == 300 + 299  # only the new bars
    assert (out / "features/btc-usdt/close.15min.bin").stat().st_size == first_size + 4 * 300


def test_new_batch_with_missing_bars_lands_in_explicit_slots(tmp_path: Path) -> None:
    """qlib's dump_update shifts every value after a missing bar (QLIB.md); we must not."""
    store = Store(tmp_path / "data")
    for inst in ("AAA-USDT", "BBB-USDT"):
        store.write_candles(inst, M15, make(grid(M15, T0, 100), 1))
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    later = T0 + 100 * M15.ms
    store.write_candles("AAA-USDT", M15, make(grid(M15, later, 10), 2))  # all 10 new bars
    batch = make([later + 2 * M15.ms, later + 7 * M15.ms], 3)  # BBB lacks 8 of the 10
    store.write_candles("BBB-USDT", M15, batch)
    export_qlib(store, out, M15)
    start, close = read_bin(out / "features/bbb-usdt/close.15min.bin")
    assert start == 0 and close.size == 108
    assert close[102] == np.float32(batch[0].close) and close[107] == np.float32(batch[1].close)
    assert np.isnan(close[[100, 101, 103, 104, 105, 106]]).all()
    cal = (out / "calendars/15min.txt").read_text().splitlines()
    assert len(cal) == 110 and cal[107] == "2024-01-31 02:45:00"
    assert tree(out) == tree(_fresh(store, tmp_path / "fresh", M15))


def _fresh(store: Store, out: Path, tf: Timeframe, **kw: object) -> Path:
    export_qlib(store, out, tf, **kw)  # type: ignore[arg-type]
    return out


def test_changes_inside_the_exported_range_are_detected(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    btc = store.read_candles("BTC-USDT", M15).column("ts").to_numpy()
    hole = int(np.setdiff1d(grid(M15, T0, 500), btc)[0])

    store.write_candles("BTC-USDT", M15, make([hole], 11))  # a repaired gap in January
    r = incremental_matches_full(tmp_path, store, out, M15, "gap")
    assert r.appended == ("BTC-USDT",)

    last = int(btc[-1])
    store.write_candles("BTC-USDT", M15, make([last], 12))  # the tail bar revised
    r = incremental_matches_full(tmp_path, store, out, M15, "tail")
    assert r.appended == ("BTC-USDT",)

    store.write_funding("BTC-USDT-SWAP", [FundingRate(T0 + 3 * HOUR_MS, 0.5, 0.5, "poll")])
    r = incremental_matches_full(tmp_path, store, out, M15, "funding-revised")
    assert r.appended == ("BTC-USDT", "BTC-USDT-SWAP")


def test_history_growing_backwards_moves_the_calendar(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    store.write_candles("ETH-USDT", M15, make(grid(M15, T0 - 30 * M15.ms, 10), 8))  # earlier
    r = incremental_matches_full(tmp_path, store, out, M15, "prepend")
    assert r.rewritten == ("ETH-USDT",)
    assert r.appended == ("BTC-USDT", "BTC-USDT-SWAP")  # only their start index changed
    assert r.calendar_first == T0 - 30 * M15.ms

    store.write_candles("SOL-USDT", M15, make(grid(M15, T0 - 99 * M15.ms, 5), 9))  # new, earlier
    r = incremental_matches_full(tmp_path, store, out, M15, "new-instrument")
    assert r.rewritten == ("SOL-USDT",) and len(r.appended) == 3


def test_selection_is_the_directory_content(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    sel = ["BTC-USDT-SWAP", "BTC-USDT"]
    r = incremental_matches_full(tmp_path, store, out, M15, "subset", instruments=sel)
    assert r.removed == ("ETH-USDT",) and r.instruments == ("BTC-USDT", "BTC-USDT-SWAP")
    assert not (out / "features/eth-usdt").exists()
    assert "ETH-USDT" not in (out / "instruments/all.txt").read_text()


def test_several_timeframes_share_a_directory(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    store.write_candles("BTC-USDT", H1, make(grid(H1, T0 - 5 * H1.ms, 120), 4))
    store.write_candles("DOGE-USDT", H1, make(grid(H1, T0, 10), 5))
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    export_qlib(store, out, H1)
    lines = (out / "instruments/all.txt").read_text().splitlines()
    # The widest range over both timeframes: 1h starts earlier, 15m ends later.
    assert lines[0] == "BTC-USDT\t2024-01-29 19:00:00\t2024-02-04 04:45:00"
    assert [x.split("\t")[0] for x in lines] == [
        "BTC-USDT",
        "BTC-USDT-SWAP",
        "DOGE-USDT",
        "ETH-USDT",
    ]
    h1 = (out / "instruments/60min.txt").read_text().splitlines()
    assert h1 == [
        "BTC-USDT\t2024-01-29 19:00:00\t2024-02-03 18:00:00",
        "DOGE-USDT\t2024-01-30 00:00:00\t2024-01-30 09:00:00",
    ]
    check_against_store(store, out, M15)
    check_against_store(store, out, H1)
    # Updating one timeframe leaves the other's files alone; same bytes as the same sequence.
    store.write_candles("BTC-USDT", M15, make(grid(M15, T0 + 500 * M15.ms, 8), 6))
    before = {k: v for k, v in tree(out).items() if "60min" in k}
    export_qlib(store, out, M15)
    assert {k: v for k, v in tree(out).items() if "60min" in k} == before
    fresh = tmp_path / "fresh"
    export_qlib(store, fresh, M15)
    export_qlib(store, fresh, H1)
    assert tree(out) == tree(fresh)


def test_one_minute_across_a_month(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    start = T0 + 2 * 24 * HOUR_MS - 300 * MINUTE_MS  # 2024-01-31 19:00, into February
    store.write_candles("BTC-USDT", M1, make(grid(M1, start, 400, 0.2, 1), 1))
    out = tmp_path / "qlib"
    export_qlib(store, out, M1)
    store.write_candles("BTC-USDT", M1, make(grid(M1, start + 400 * MINUTE_MS, 50, 0.5, 2), 2))
    r = incremental_matches_full(tmp_path, store, out, M1, "1m")
    assert r.appended == ("BTC-USDT",) and r.freq == "1min"


class CountingStore(Store):
    """A store that records which ranges the exporter reads."""

    reads: list[tuple[int | None, int | None]]

    def read_candles(self, inst_id, tf, start=None, end=None, *, columns=None):  # type: ignore[no-untyped-def]
        self.reads.append((start, end))
        return super().read_candles(inst_id, tf, start, end, columns=columns)


def _age(root: Path) -> None:
    """Make every partition look written an hour ago (the racy-file rule ignores fresh ones)."""
    past = time.time() - 3600
    for p in root.rglob("*.parquet"):
        os.utime(p, (past, past))


@pytest.mark.parametrize("tf", [M15, M1], ids=["15m", "1m"])
def test_unchanged_partitions_are_not_read_again(tmp_path: Path, tf: Timeframe) -> None:
    root = tmp_path / "data"
    store = Store(root)
    days = 80 if tf == M15 else 75
    ts = grid(tf, T0 - 70 * 24 * HOUR_MS, days * 24 * HOUR_MS // tf.ms)  # Nov 2023 .. Jan/Feb 2024
    day = 24 * HOUR_MS // tf.ms
    lost_day = ts[40 * day : 41 * day]  # a whole UTC day in December, fetched late below
    ts = np.concatenate([ts[: 40 * day], ts[41 * day :]])
    store.write_candles("BTC-USDT", tf, make(ts, 1))
    _age(root)
    out = tmp_path / "qlib"
    export_qlib(store, out, tf)
    counting = CountingStore(root)
    counting.reads = []
    store.write_candles("BTC-USDT", tf, make(grid(tf, int(ts[-1]) + tf.ms, 4), 2))
    r = export_qlib(counting, out, tf)
    assert r.slots_written == 4
    assert len(counting.reads) == 1  # the last month only; Nov, Dec, Jan skipped unread
    # A partition that did change is read and compared, even though it is "old".
    store.write_candles("BTC-USDT", tf, make([int(ts[5])], 3))
    counting.reads = []
    r = export_qlib(counting, out, tf)
    assert len(counting.reads) == 2 and r.slots_written > 0
    # So is an old month that gained a partition file (1m: the lost day's file).
    store.write_candles("BTC-USDT", tf, make(lost_day, 4))
    counting.reads = []
    r = export_qlib(counting, out, tf)
    assert day <= r.slots_written <= 31 * day  # a changed month is rewritten whole
    assert any(lo <= lost_day[0] < hi for lo, hi in counting.reads if lo is not None and hi)
    assert tree(out) == tree(_fresh(store, tmp_path / "fresh", tf))


# -- crashes ------------------------------------------------------------------------------------


def test_an_interrupted_export_is_redone_in_full(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    store.write_candles("BTC-USDT", M15, make(grid(M15, T0 + 500 * M15.ms, 20), 5))

    class Crash(Exception):
        pass

    def crash_after_first(msg: str) -> None:
        raise Crash(msg)

    with pytest.raises(Crash):
        export_qlib(store, out, M15, progress=crash_after_first)
    assert journal_path(out, "15m").exists()
    r = export_qlib(store, out, M15)
    assert r.rewritten == r.instruments and "interrupted" in r.notes[0]
    assert not journal_path(out, "15m").exists()
    assert tree(out) == tree(_fresh(store, tmp_path / "fresh", M15))


def test_a_torn_feature_file_is_rewritten(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    with (out / "features/btc-usdt/open.15min.bin").open("ab") as fh:
        fh.write(b"\x00\x00")  # half an append, say
    store.write_candles("BTC-USDT-SWAP", M15, make(grid(M15, T0 + 500 * M15.ms, 3), 5))
    r = export_qlib(store, out, M15)
    assert r.rewritten == ("BTC-USDT",) and r.appended == ("BTC-USDT-SWAP",)
    assert tree(out) == tree(_fresh(store, tmp_path / "fresh", M15))


def test_an_old_format_version_is_rewritten(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    doc = json.loads((out / "manifest.json").read_text())
    doc["format_version"] = 0
    (out / "manifest.json").write_text(json.dumps(doc))
    r = export_qlib(store, out, M15)
    assert r.rewritten == r.instruments and "not reusable" in r.notes[0]
    assert tree(out) == tree(_fresh(store, tmp_path / "fresh", M15))


# -- errors -------------------------------------------------------------------------------------


def test_empty_store_and_missing_timeframe(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    with pytest.raises(BadInput, match=r"has no 15m candles \(it is empty\)"):
        export_qlib(store, tmp_path / "q", M15)
    store.write_candles("BTC-USDT", H1, make(grid(H1, T0, 3)))
    store.write_candles("BTC-USDT", M1, make(grid(M1, T0, 3)))
    with pytest.raises(BadInput, match=r"has no 15m candles \(it has 1m, 1h\)") as err:
        export_qlib(store, tmp_path / "q", M15)
    assert "\n" not in str(err.value) and err.value.exit_code == 2
    with pytest.raises(BadInput, match=r"no 1h candles .* for ETH-USDT; it has 1h candles for BTC"):
        export_qlib(store, tmp_path / "q", H1, instruments=["ETH-USDT", "BTC-USDT"])
    with pytest.raises(UnknownTimeframe, match="did you mean 15m"):
        Timeframe.parse("15min")


def test_refuses_a_directory_that_is_not_an_export(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(BadInput, match=r"refusing .* not empty and has no manifest\.json"):
        export_qlib(store, foreign, M15)
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
    (foreign / "manifest.json").write_text('{"name": "other tool"}')
    with pytest.raises(BadInput, match="was not written by okx-collector"):
        export_qlib(store, foreign, M15)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(BadInput, match="not a directory"):
        export_qlib(store, afile, M15)
    with pytest.raises(BadInput, match="refusing"):
        export_qlib(store, tmp_path / "data", M15)  # the store itself
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_qlib(store, empty, M15).bars == 500


def test_funding_collected_later_is_added(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    store.write_candles("BTC-USDT", H1, make(grid(H1, T0, 48), 1))
    out = tmp_path / "qlib"
    export_qlib(store, out, H1)
    assert not (out / "features/btc-usdt/funding_rate.60min.bin").exists()
    store.write_funding("BTC-USDT-SWAP", funding(T0 + 8 * HOUR_MS, 4))
    r = incremental_matches_full(tmp_path, store, out, H1, "funding-added")
    assert r.appended == ("BTC-USDT",) and r.slots_written == 0
    _, values = read_bin(out / "features/btc-usdt/funding_rate.60min.bin")
    assert np.isnan(values[:8]).all() and np.isfinite(values[8:40]).all()
    assert np.isnan(values[40:]).all()  # past the next expected settlement


@pytest.mark.parametrize("name", ["1d", "1w", "4h"])
def test_long_timeframes(tmp_path: Path, name: str) -> None:
    tf = Timeframe.parse(name)
    store = Store(tmp_path / "data")
    start = tf.ceil(T0 - 400 * tf.ms)
    store.write_candles("BTC-USDT", tf, make(grid(tf, start, 300, drop=0.1, seed=2), 2))
    store.write_candles("ETH-USDT", tf, make(grid(tf, start + 9 * tf.ms, 200), 3))
    out = tmp_path / "qlib"
    export_qlib(store, out, tf)
    check_against_store(store, out, tf)
    store.write_candles("BTC-USDT", tf, make(grid(tf, start + 310 * tf.ms, 5), 4))
    r = incremental_matches_full(tmp_path, store, out, tf, name)
    assert r.appended == ("BTC-USDT",) and r.freq == tf.qlib_freq


def _age_new(root: Path) -> None:
    """Age just-written partitions so that the next export may remember them (see sources.py)."""
    now = time.time()
    for p in root.rglob("*.parquet"):
        if p.stat().st_mtime > now - 60:
            past = now - 3600 - np.random.default_rng(int(now * 1e6) % 2**32).random()
            os.utime(p, (past, past))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_incremental_equals_full(tmp_path: Path, seed: int) -> None:
    """Random edits of the store between exports; after each, the directory equals a fresh one."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "data"
    store = Store(root)
    insts = ["AAA-USDT", "AAA-USDT-SWAP", "BBB-USDT"]
    for k, inst in enumerate(insts):
        store.write_candles(inst, M15, make(grid(M15, T0 + 5 * k * M15.ms, 3000, 0.05, k), k))
    store.write_funding("AAA-USDT-SWAP", funding(T0, 30, seed))
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    for step in range(12):
        ts = {i: store.read_candles(i, M15).column("ts").to_numpy() for i in insts}
        inst = insts[int(rng.integers(len(insts)))]
        op = int(rng.integers(7))
        s = int(rng.integers(1, 10**6))
        if op == 0:  # new bars, some missing
            new = grid(M15, int(ts[inst][-1]) + M15.ms, int(rng.integers(1, 3000)), 0.3, s)
            store.write_candles(inst, M15, make(new, s))
        elif op == 1:  # repair a hole
            holes = np.setdiff1d(np.arange(ts[inst][0], ts[inst][-1], M15.ms), ts[inst])
            if holes.size:
                store.write_candles(inst, M15, make(holes[:: max(1, holes.size // 5)], s))
        elif op == 2:  # revise old candles
            store.write_candles(inst, M15, make(rng.choice(ts[inst], 3, replace=False), s))
        elif op == 3:  # older history
            store.write_candles(inst, M15, make(grid(M15, int(ts[inst][0]) - 50 * M15.ms, 20), s))
        elif op == 4:  # a new instrument
            name = f"N{step}-USDT"
            start = T0 + int(rng.integers(-500, 4000)) * M15.ms
            store.write_candles(name, M15, make(grid(M15, start, 300, 0.1, s), s))
            insts.append(name)
        elif op == 5:  # new settlements, or a revised one
            last = store.last_funding_time("AAA-USDT-SWAP") or T0
            at = last + 8 * HOUR_MS if rng.random() < 0.7 else T0 + 8 * HOUR_MS * 3
            store.write_funding(
                "AAA-USDT-SWAP", [FundingRate(at, float(rng.normal()), 0.0, "poll")]
            )
        _age_new(root)
        selection = None if op != 6 else sorted(rng.choice(insts, 2, replace=False).tolist())
        export_qlib(store, out, M15, instruments=selection)
        fresh = tmp_path / f"fresh-{step}"
        export_qlib(store, fresh, M15, instruments=selection)
        assert tree(out) == tree(fresh), (step, op, inst)
    check_against_store(store, out, M15)


KILLER = """
import os, signal, sys
from pathlib import Path
from okx_collector.qlib_export import export_qlib
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

def die(msg):
    os.kill(os.getpid(), signal.SIGKILL)

export_qlib(Store(sys.argv[1]), Path(sys.argv[2]), Timeframe.parse("15m"), progress=die)
"""


def test_kill_9_in_the_middle_of_an_update(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    for k, inst in enumerate(("BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT")):
        store.write_candles(inst, M15, make(grid(M15, T0 + 500 * M15.ms, 50, 0.2, k), k))
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path / "data"), str(out)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    assert journal_path(out, "15m").exists()
    r = export_qlib(store, out, M15)
    assert r.rewritten == r.instruments
    assert tree(out) == tree(_fresh(store, tmp_path / "fresh", M15))
    assert not list(out.rglob("*.tmp-*"))


def test_one_export_at_a_time(tmp_path: Path) -> None:
    store = base_store(tmp_path / "data")
    out = tmp_path / "qlib"
    with outdir.locked(out), pytest.raises(EnvironmentProblem, match="another export"):
        export_qlib(store, out, M15)
    assert export_qlib(store, out, M15).bars == 500
