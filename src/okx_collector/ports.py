"""The history calls both the live collector and the backfill make of an exchange, as Protocols
(`exchange.OkxExchange` has them); `live.ports` and `backfill.runner` build on these, so that
each signature is written once and nothing here needs ccxt."""

from __future__ import annotations

from typing import Protocol

from okx_collector.instruments import Instrument
from okx_collector.models import FundingRate, RawCandle, Source
from okx_collector.timeframes import Timeframe


class CandleHistory(Protocol):
    """Candles of one series over REST."""

    async def fetch_candles(
        self,
        inst: Instrument,
        tf: Timeframe,
        start: int,
        end: int,
        *,
        recent: bool,
        source: Source,
    ) -> list[RawCandle]: ...


class FundingHistory(Protocol):
    """Settled funding rates of one perpetual over REST."""

    async def fetch_funding_history(
        self, inst: Instrument, start: int, end: int, source: Source = "backfill"
    ) -> list[FundingRate]: ...
