"""Backfill reports and refusals: funding rows add up; every unknown symbol is named at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import Settings
from okx_collector.errors import BadInput
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from tests.conftest import fast_delays

PERPS = ("BTC", "ETH", "ADA", "DOT", "LINK")


async def test_funding_rows_in_the_report_are_the_rows_written(
    sim: Simulator, make_settings: Callable[..., Settings]
) -> None:
    # Five perpetuals fetched by concurrent workers: a shared `total += await ...` kept only
    # some workers' counts (the summary said 42 where 126 were written).
    symbols = ",".join(f"{c}/USDT:USDT" for c in PERPS)
    settings = make_settings(sim, symbols=symbols, timeframes="1h", since="7d")
    report = await run_backfill_async(
        settings, progress=SilentProgress(), rate_limit_scale=0, delays=fast_delays
    )
    store = Store(settings.data_dir)
    stored = {c: store.read_funding(f"{c}-USDT-SWAP").num_rows for c in PERPS}
    assert all(n >= 21 for n in stored.values()), stored  # 7 days, settled every 8 h or less
    assert report.funding_rows == sum(stored.values())
    candles = sum(store.read_candles(f"{c}-USDT-SWAP", settings.timeframes[0]).num_rows
                  for c in PERPS)  # fmt: skip
    assert report.written == candles


async def test_every_unknown_symbol_is_named_in_one_line(
    sim: Simulator, make_settings: Callable[..., Settings]
) -> None:
    unknown = [f"NOPE{i}/USDT" for i in range(195)]
    known = [f"{c}/USDT" for c in PERPS]
    settings = make_settings(sim, symbols=",".join(known + unknown), timeframes="1h")
    with pytest.raises(BadInput) as caught:
        await run_backfill_async(
            settings, progress=SilentProgress(), rate_limit_scale=0, delays=fast_delays
        )
    message = str(caught.value)
    assert "\n" not in message and message.startswith("unknown 195 symbols: ")
    assert all(f"'{name}'" in message for name in unknown)
    assert not any(f"'{name}'" in message for name in known)
