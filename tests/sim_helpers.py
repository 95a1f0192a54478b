"""Shared helpers for the simulator tests: fixed times, ccxt clients pointed at a simulator, and a
ccxt.pro subclass that keeps OKX's `confirm` flag (OKX.md §2.8)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import ccxt.async_support
import ccxt.pro

from okx_collector.simulator import Simulator

T = TypeVar("T")

# 2026-01-15T00:07:30Z: a Thursday, mid-candle for every bar.
START_MS = 1_768_435_650_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
SWAPS = ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "ADA-USDT-SWAP", "DOT-USDT-SWAP", "LINK-USDT-SWAP"]
SPOTS = ["BTC-USDT", "ETH-USDT", "ADA-USDT", "DOT-USDT", "LINK-USDT"]


def config(sim: Any, **extra: Any) -> dict[str, Any]:
    """ccxt config for a Simulator or SimulatorThread (no throttle, short timeout)."""
    return {
        "urls": {"api": {"rest": sim.rest_url, "ws": sim.ws_url}},
        "enableRateLimit": False,
        "timeout": 5000,
        **extra,
    }


@asynccontextmanager
async def rest_client(sim: Any, **extra: Any) -> AsyncIterator[Any]:
    """An async ccxt okx client, markets loaded, closed on exit."""
    ex = ccxt.async_support.okx(config(sim, **extra))
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


class OkxWithConfirm(ccxt.pro.okx):  # type: ignore[misc]
    """ccxt.pro okx that records every candle row it receives, with OKX's confirm flag."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.rows: list[tuple[str, str, list[str]]] = []  # (channel, instId, 9-field row)

    def handle_ohlcv(self, client: Any, message: Any) -> Any:
        arg = message.get("arg", {})
        for row in message.get("data", []):
            self.rows.append((arg.get("channel"), arg.get("instId"), list(row)))
        return super().handle_ohlcv(client, message)


@asynccontextmanager
async def pro_client(
    sim: Any, keep_alive_ms: int | None = None, **extra: Any
) -> AsyncIterator[OkxWithConfirm]:
    """A ccxt.pro okx client (confirm-recording), markets loaded, closed on exit."""
    if keep_alive_ms is not None:
        extra["streaming"] = {"keepAlive": keep_alive_ms}
    ex = OkxWithConfirm(config(sim, **extra))
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


async def within(awaitable: Awaitable[T], seconds: float = 5.0) -> T:
    """Await with a deadline (tests never hang)."""
    return await asyncio.wait_for(awaitable, seconds)


@asynccontextmanager
async def simulator(**kwargs: Any) -> AsyncIterator[Simulator]:
    """A started Simulator; defaults: seed 7, START_MS, no rate limits, fast pushes."""
    params: dict[str, Any] = {
        "seed": 7,
        "start_ms": START_MS,
        "rate_limit_scale": 0.0,
        "push_interval": 0.05,
    }
    params.update(kwargs)
    async with Simulator(**params) as sim:
        yield sim
