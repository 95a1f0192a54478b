"""`status` as a user runs it: whole numbers at any width, exchange time, filters, --check."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from okx_collector.config import Settings, build_settings
from okx_collector.errors import BadInput
from okx_collector.models import Candle, FundingRate
from okx_collector.simulator import Simulator
from okx_collector.status import collect_status, render_status
from okx_collector.status_command import CHECK_FAILED, exchange_now, run_status
from okx_collector.store import Store
from okx_collector.timeframes import HOUR_MS, MINUTE_MS, Timeframe

M1 = Timeframe.parse("1m")
M15 = Timeframe.parse("15m")
UNREACHABLE = "http://127.0.0.1:9"


def _candles(tf: Timeframe, opens: list[int]) -> list[Candle]:
    return [Candle(t, 1.0, 2.0, 0.5, 1.5, 1.0, 1.0, "backfill") for t in opens]


def fill(store: Store, now_ms: int, *, gaps: bool = True) -> None:
    """BTC 1m: 13,500 candles up to the last closed one, two gaps; ETH 15m whole; funding 8h."""
    last_1m = now_ms // M1.ms * M1.ms - M1.ms
    opens = [last_1m - k * M1.ms for k in range(13_600)]
    if gaps:
        opens = [t for k, t in enumerate(opens) if not (40 <= k < 100 or 5_000 <= k < 5_040)]
    store.write_candles("BTC-USDT", M1, _candles(M1, sorted(opens)))
    last_15m = now_ms // M15.ms * M15.ms - M15.ms
    store.write_candles("ETH-USDT", M15, _candles(M15, [last_15m - k * M15.ms for k in range(50)]))
    h8 = 8 * HOUR_MS
    settle = now_ms // h8 * h8
    store.write_funding(
        "BTC-USDT-SWAP", [FundingRate(settle - k * h8, 1e-4, 1e-4, "backfill") for k in range(9)]
    )


def settings_for(data_dir: Path, **flags: Any) -> Settings:
    return build_settings({"data_dir": str(data_dir), **flags}, env={})


async def status_text(settings: Settings, width: int, **kwargs: Any) -> tuple[str, int]:
    console = Console(record=True, width=width, file=io.StringIO())
    code = await asyncio.to_thread(
        run_status, settings, as_json=False, console=console, clock_timeout=1.0, **kwargs
    )
    return console.export_text(), code


@pytest.mark.parametrize("width", [60, 80, 120])
async def test_every_number_is_whole_at_any_width(
    sim: Simulator, tmp_path: Path, width: int
) -> None:
    store = Store(tmp_path / "data")
    fill(store, sim.now_ms())
    settings = settings_for(store.data_dir, rest_url=sim.rest_url)
    text, code = await status_text(settings, width)
    assert code == 0
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines()), text
    btc = next(line for line in text.splitlines() if line.startswith("BTC-USDT 1m"))
    assert re.search(r"\b13,500\b", btc), btc  # rows
    assert re.search(r"\s2\s", btc), btc  # gaps
    assert re.search(r"\b100\b", btc), btc  # missing
    for series in ("ETH-USDT 15m", "BTC-USDT-SWAP fund"):
        assert series in text
    if width >= 80:  # everything fits from 80 columns
        assert "no room" not in text and "1h (60)" in btc
    else:  # the largest gap's column goes first
        assert "no room for max gap" in text and "max gap" not in text.splitlines()[2]


async def test_ages_are_on_the_exchanges_clock(sim: Simulator, tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    fill(store, sim.now_ms())  # the simulator's clock is months away from this machine's
    settings = settings_for(store.data_dir, rest_url=sim.rest_url)
    text, _ = await status_text(settings, 120)
    assert f"ages on exchange time from {sim.rest_url}" in " ".join(text.split())
    ages = [s.coverage.age_ms for s in collect_status(store, sim.now_ms())]
    assert all(a is not None and 0 <= a < 8 * HOUR_MS for a in ages), ages
    eth = next(line for line in text.splitlines() if line.startswith("ETH-USDT 15m"))
    assert re.search(r"\b1[0-9]m|\b[0-9]m|\b[0-9]+s\b", eth.split()[-1]), eth
    assert "d " not in eth.split("  ")[-1]


async def test_without_the_exchange_the_local_clock_is_named_and_no_age_is_negative(
    tmp_path: Path,
) -> None:
    # Data from a simulator a day ahead of this machine: the local clock cannot age it.
    store = Store(tmp_path / "data")
    fill(store, int(time.time() * 1000) + 86_400_000)
    settings = settings_for(store.data_dir, rest_url=UNREACHABLE)
    text, _ = await status_text(settings, 120)
    assert f"ages on this machine's clock: {UNREACHABLE}" in " ".join(text.split())
    assert not re.search(r"(^|\s)-\d", text), text
    assert "ahead" in text


def test_the_clock_falls_back_within_the_timeout() -> None:
    started = time.monotonic()
    _, clock = exchange_now(UNREACHABLE, timeout=1.0)
    assert clock.source == "local" and UNREACHABLE in clock.note
    assert time.monotonic() - started < 3


async def test_symbols_and_timeframes_narrow_status(sim: Simulator, tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    fill(store, sim.now_ms())
    settings = settings_for(store.data_dir, rest_url=sim.rest_url, symbols="BTC/USDT")
    text, _ = await status_text(settings, 120)
    assert "BTC-USDT 1m" in text and "BTC-USDT-SWAP fund" in text and "ETH-USDT" not in text
    settings = settings_for(store.data_dir, rest_url=sim.rest_url, timeframes="15m")
    text, _ = await status_text(settings, 120)
    assert "ETH-USDT 15m" in text and "BTC-USDT 1m" not in text
    settings = settings_for(store.data_dir, rest_url=sim.rest_url, symbols="spot:USDT")
    text, _ = await status_text(settings, 120)
    assert "ETH-USDT 15m" in text and "BTC-USDT 1m" in text
    bad = settings_for(store.data_dir, symbols="BTC/USDT,XRP/USDT,DOGE/USDT")
    with pytest.raises(BadInput, match=r"nothing stored for 2 symbol\(s\): XRP/USDT, DOGE/USDT"):
        await asyncio.to_thread(run_status, bad, as_json=False, clock_timeout=0.1)
    bad = settings_for(store.data_dir, timeframes="1h")
    with pytest.raises(BadInput, match=r"no 1h candles \(it holds: 15m, 1m\)"):
        await asyncio.to_thread(run_status, bad, as_json=False, clock_timeout=0.1)


async def test_check_exits_3_on_gaps_or_stale_series(
    sim: Simulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = Store(tmp_path / "data")
    fill(store, sim.now_ms(), gaps=False)
    settings = settings_for(store.data_dir, rest_url=sim.rest_url)
    _, code = await status_text(settings, 120, check=True)
    assert code == 0
    # A gap: exit 3, one line naming the series.
    gap_at = sim.now_ms() // M1.ms * M1.ms - 20_000 * M1.ms
    store.write_candles("BTC-USDT", M1, _candles(M1, [gap_at]))
    _, code = await status_text(settings, 120, check=True)
    assert code == CHECK_FAILED
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "BTC-USDT 1m (1 gap(s))" in err
    # Stale: nothing new for more than two bars (a clean series, judged 45 minutes later).
    fresh = Store(tmp_path / "fresh")
    fill(fresh, sim.now_ms() - 45 * MINUTE_MS, gaps=False)
    stale = settings_for(fresh.data_dir, rest_url=sim.rest_url, symbols="ETH/USDT")
    _, code = await status_text(stale, 120, check=True)
    assert code == CHECK_FAILED
    assert "ETH-USDT 15m (stale, 3 due)" in capfd.readouterr().err


async def test_json_keeps_its_keys_and_adds_the_clock(
    sim: Simulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = Store(tmp_path / "data")
    fill(store, sim.now_ms())
    settings = settings_for(store.data_dir, rest_url=sim.rest_url)
    await asyncio.to_thread(run_status, settings, as_json=True)
    doc = json.loads(capfd.readouterr().out)
    assert doc["version"] == 1 and doc["clock"]["source"] == "exchange"
    first = doc["series"][0]
    assert list(first)[:21] == [
        "series", "kind", "inst_id", "timeframe", "interval_ms", "now_ms", "now", "first_ms",
        "first", "last_ms", "last", "rows", "gap_count", "missing", "largest_gap_missing",
        "largest_gap_ms", "age_ms", "behind", "gaps", "delisted_ms", "delisted",
    ]  # fmt: skip
    assert first["stale"] is False


def test_render_drops_columns_in_priority_order(tmp_path: Path) -> None:
    store = Store(tmp_path)
    now = 1_790_000_000_000
    fill(store, now)
    statuses = collect_status(store, now)
    widths: dict[int, str] = {}
    for width in (40, 60, 80):
        console = Console(record=True, width=width, file=io.StringIO())
        render_status(statuses, console)
        widths[width] = console.export_text()
    headers = {w: next(ln for ln in t.splitlines() if "rows" in ln) for w, t in widths.items()}
    assert headers[80].split() == [
        "series", "first", "last", "rows", "gaps", "missing", "max", "gap", "age",
    ]  # fmt: skip
    assert headers[60].split() == ["series", "last", "rows", "gaps", "missing", "age"]
    assert headers[40].split() == ["series", "rows", "gaps", "age"], widths[40]
