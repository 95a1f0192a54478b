"""An incremental export appends the mark, index and open-interest fields as it does the candle
fields: it reads each derived series from the UTC day of the last exported bar on, resumes the
files' checksums, and stays byte-equal to a fresh export when an earlier value was revised, a
series appeared or went, the saved state was lost, or the last export was interrupted."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from okx_collector.models import OpenInterest
from okx_collector.qlib_export import export_qlib
from okx_collector.qlib_export.sources import SOURCES_FILE
from okx_collector.store.schema import Kind
from okx_collector.store.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe
from tests.test_qlib_export import grid, make, tree
from tests.test_qlib_export_append import _age
from tests.test_qlib_export_derived import prices

M1 = Timeframe.parse("1m")
M15 = Timeframe.parse("15m")
APR26 = 1_745_625_600_000  # 2025-04-26 00:00 UTC: the data crosses into May
SWAP, SPOT, ETH = "BTC-USDT-SWAP", "BTC-USDT", "ETH-USDT"


class CountingStore(Store):
    """A store that records the derived ranges the exporter reads, and can fail one of them."""

    reads: list[tuple[str, str, int | None, int | None]]
    fail_on: str | None = None

    def read_kind(self, kind, series_id, tf, start=None, end=None, columns=None):  # type: ignore[no-untyped-def]
        self.reads.append((kind.name, series_id, start, end))
        if series_id == self.fail_on:
            raise RuntimeError("the disk went away")
        return super().read_kind(kind, series_id, tf, start, end, columns)


def _oi(ts: np.ndarray, seed: int) -> list[OpenInterest]:
    rng = np.random.default_rng(seed)
    return [OpenInterest(int(t), 1e5 + float(rng.random()) * 1e3, 1e3, 9e7, "ws") for t in ts]


def _write(store: Store, tf: Timeframe, start: int, n: int, seed: int) -> None:
    """Candles of three instruments; mark, index and open interest of BTC only (ETH: NaN)."""
    for k, inst in enumerate((SWAP, SPOT, ETH)):
        store.write_candles(inst, tf, make(grid(tf, start, n, 0.02, seed + k), seed + k))
    store.write_price_candles("mark", SWAP, tf, prices(grid(tf, start, n, 0.05, seed + 5), seed))
    store.write_price_candles("index", SPOT, tf, prices(grid(tf, start, n, 0.03, seed + 6), seed))
    store.write_open_interest(SWAP, tf, _oi(grid(tf, start + tf.ms, n, 0.04, seed + 7), seed))


def _store(root: Path, tf: Timeframe, days: int) -> Store:
    store = Store(root)
    _write(store, tf, APR26, days * DAY_MS // tf.ms, 1)
    store.compact()
    _age(root)
    return store


def _fresh(store: Store, out: Path, tf: Timeframe) -> dict[str, bytes]:
    export_qlib(store, out, tf)
    return tree(out)


def _checksums_hold(out: Path, tf: Timeframe) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["timeframes"][tf.name]["instruments"].values():
        for rel, f in entry.get("derived", {}).items():
            assert f["sha256"] == hashlib.sha256((out / rel).read_bytes()).hexdigest()


def _last(store: Store, tf: Timeframe) -> int:
    return max(store.last_candle_ts(i, tf) or 0 for i in (SWAP, SPOT, ETH))


@pytest.mark.parametrize("tf", [M1, M15], ids=["1m", "15m"])
def test_an_append_reads_the_derived_series_from_the_day_of_the_last_bar(
    tmp_path: Path, tf: Timeframe
) -> None:
    root = tmp_path / "data"
    store = _store(root, tf, 10)
    out = tmp_path / "qlib"
    export_qlib(store, out, tf)
    counting = CountingStore(root)
    for k, n in enumerate((5, DAY_MS // tf.ms + 3, 2)):  # same day, into the next day, more
        last = _last(store, tf)
        _write(store, tf, last + tf.ms, n, 20 + k)
        store.compact()
        _age(root)
        counting.reads = []
        r = export_qlib(counting, out, tf)
        assert set(r.appended) == {SWAP, SPOT, ETH}
        # Each series read from the UTC day of the last exported bar on (NaN groups: not at all).
        day = last - last % DAY_MS
        starts = [lo for _, _, lo, _ in counting.reads]
        assert starts and all(lo is not None and lo >= day for lo in starts)
        assert {(kind, sid) for kind, sid, _, _ in counting.reads} == {
            ("mark_candles", SWAP),
            ("index_candles", SPOT),
            ("open_interest", SWAP),
        }
        _checksums_hold(out, tf)
        assert tree(out) == _fresh(store, tmp_path / f"fresh-{k}", tf)
    # Nothing new: the last day read again (as for the candle fields), nothing written.
    counting.reads = []
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")}
    r = export_qlib(counting, out, tf)
    last = _last(store, tf)
    assert set(r.unchanged) == {SWAP, SPOT, ETH}
    assert all(lo is not None and lo >= last - last % DAY_MS for _, _, lo, _ in counting.reads)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")} == mtimes


@pytest.mark.parametrize("where", ["earlier month", "earlier day", "last day"])
def test_a_revised_earlier_value_is_read_and_rewritten_exactly(tmp_path: Path, where: str) -> None:
    root = tmp_path / "data"
    store = _store(root, M15, 10)
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    last = _last(store, M15)
    at = {"earlier month": APR26 + 3 * M15.ms, "earlier day": APR26 + 6 * DAY_MS, "last day": last}
    t = at[where] - at[where] % M15.ms
    store.write_price_candles("mark", SWAP, M15, prices(np.array([t]), 99))
    store.write_open_interest(SWAP, M15, _oi(np.array([t + M15.ms]), 98))
    _write(store, M15, last + M15.ms, 4, 30)
    store.compact()
    counting = CountingStore(root)
    counting.reads = []
    export_qlib(counting, out, M15)
    # The revised series are read where they changed; the index was not revised: its new day.
    index_reads = [lo for kind, _, lo, _ in counting.reads if kind == "index_candles"]
    assert index_reads and min(index_reads) >= last - last % DAY_MS  # type: ignore[operator]
    mark_reads = [lo for kind, _, lo, _ in counting.reads if kind == "mark_candles"]
    assert min(mark_reads) <= t  # type: ignore[type-var,operator]
    _checksums_hold(out, M15)
    got = np.fromfile(out / "features/btc-usdt-swap/mark_close.15min.bin", dtype="<f4")
    first = store.first_candle_ts(SWAP, M15)
    assert first is not None
    assert got[1 + (t - first) // M15.ms] == np.float32(prices(np.array([t]), 99)[0].close)
    assert tree(out) == _fresh(store, tmp_path / "fresh", M15)


@pytest.mark.parametrize("damage", ["deleted", "garbage", "file touched"])
def test_a_lost_saved_state_costs_time_not_correctness(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "data"
    store = _store(root, M1, 8)
    out = tmp_path / "qlib"
    export_qlib(store, out, M1)
    cache = out / SOURCES_FILE
    if damage == "deleted":
        cache.unlink()
    elif damage == "garbage":
        cache.write_text("{not json")
    else:  # a derived file changed behind the exporter's back (same size): its checksum is redone
        path = out / "features/btc-usdt-swap/mark_close.1min.bin"
        data = bytearray(path.read_bytes())
        data[8:12] = np.array([1.5], dtype="<f4").tobytes()
        path.write_bytes(bytes(data))
    _write(store, M1, _last(store, M1) + M1.ms, 30, 40)
    store.compact()
    counting = CountingStore(root)
    counting.reads = []
    r = export_qlib(counting, out, M1)
    assert set(r.appended) == {SWAP, SPOT, ETH}
    _checksums_hold(out, M1)
    if damage != "file touched":
        assert any(lo is not None and lo <= APR26 + M1.ms for _, _, lo, _ in counting.reads)
        assert tree(out) == _fresh(store, tmp_path / "fresh", M1)


def test_a_series_that_appears_or_goes_is_exact(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = _store(root, M15, 10)
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    # ETH's index appears over its whole history, BTC's open interest goes: both files change
    # where nothing new was added.
    n = 10 * DAY_MS // M15.ms
    store.write_price_candles("index", ETH, M15, prices(grid(M15, APR26, n, 0.1, 50), 50))
    store.compact()
    shutil.rmtree(root / "open_interest" / SWAP)
    store.write_open_interest("ETH-USDT-SWAP", M15, _oi(grid(M15, APR26 + M15.ms, 20), 51))
    store = Store(root)
    r = export_qlib(store, out, M15)
    assert ETH in r.appended and SWAP in r.appended
    oi = np.fromfile(out / "features/btc-usdt-swap/open_interest.15min.bin", dtype="<f4")
    assert np.isnan(oi[1:]).all()
    _checksums_hold(out, M15)
    assert tree(out) == _fresh(store, tmp_path / "fresh", M15)


def test_an_interrupted_derived_update_is_redone_in_full(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = _store(root, M15, 10)
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    _write(store, M15, _last(store, M15) + M15.ms, 50, 60)
    store.compact()
    failing = CountingStore(root)
    failing.reads, failing.fail_on = [], SPOT  # after other series were patched in place
    with pytest.raises(RuntimeError):
        export_qlib(failing, out, M15)
    r = export_qlib(store, out, M15)
    assert "interrupted" in r.notes[0] and set(r.rewritten) == {SWAP, SPOT, ETH}
    _checksums_hold(out, M15)
    assert tree(out) == _fresh(store, tmp_path / "fresh", M15)


def test_kind_names_match_the_store() -> None:
    # (The reads above are told apart by these names.)
    from okx_collector.store.schema import INDEX_CANDLES, MARK_CANDLES, OPEN_INTEREST

    kinds: list[Kind] = [MARK_CANDLES, INDEX_CANDLES, OPEN_INTEREST]
    assert [k.name for k in kinds] == ["mark_candles", "index_candles", "open_interest"]


def test_an_older_saved_state_after_a_crash_is_not_trusted_for_a_nan_file(tmp_path: Path) -> None:
    # ETH's mark is NaN (no ETH-USDT-SWAP series), then stored, then gone again; the saved state
    # of the first export (a crash after a manifest, before its saved state) says "all NaN".
    root = tmp_path / "data"
    store = _store(root, M15, 10)
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    first_state = (out / SOURCES_FILE).read_bytes()
    store.write_price_candles("mark", "ETH-USDT-SWAP", M15, prices(grid(M15, APR26, 50), 70))
    store.compact()
    export_qlib(store, out, M15)
    (out / SOURCES_FILE).write_bytes(first_state)
    shutil.rmtree(root / "mark_candles" / "ETH-USDT-SWAP")
    store = Store(root)
    _write(store, M15, _last(store, M15) + M15.ms, 3, 71)
    store.compact()
    export_qlib(store, out, M15)
    mark = np.fromfile(out / "features/eth-usdt/mark_close.15min.bin", dtype="<f4")
    assert np.isnan(mark[1:]).all()
    assert tree(out) == _fresh(store, tmp_path / "fresh", M15)


@pytest.mark.parametrize("name", ["1h", "1d", "1w"])
def test_longer_timeframes_append_exactly(tmp_path: Path, name: str) -> None:
    # Bars of a day or a week: the day of the last bar is the bar, open interest of the last
    # bar of a month is stored in the next month.
    tf = Timeframe.parse(name)
    root = tmp_path / "data"
    store = Store(root)
    _write(store, tf, tf.ceil(APR26 - 200 * DAY_MS), 200 * DAY_MS // tf.ms, 1)
    store.compact()
    _age(root)
    out = tmp_path / "qlib"
    export_qlib(store, out, tf)
    for k in range(3):
        _write(store, tf, _last(store, tf) + tf.ms, 3 + 7 * k, 10 + k)
        store.compact()
        _age(root)
        r = export_qlib(store, out, tf)
        assert set(r.appended) == {SWAP, SPOT, ETH}
        assert tree(out) == _fresh(store, tmp_path / f"fresh-{k}", tf)
