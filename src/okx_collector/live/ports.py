"""What the live collector needs from an exchange: exactly the calls it makes, as Protocols.

`exchange.OkxExchange` satisfies them; the collector and the funding tracker depend on these, so
that their tests can hand them anything with the same calls, and so that nothing here needs ccxt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from okx_collector.instruments import Instrument
from okx_collector.models import Candle, FundingObservation, Source
from okx_collector.ports import CandleHistory, FundingHistory
from okx_collector.timeframes import Timeframe

# The exchange layer's websocket sinks (called on the event loop by its message handler).
CandleSink = Callable[[str, Timeframe, int, Candle | None], None]  # instId, tf, open ts, final
FundingSink = Callable[[str, FundingObservation], None]
RefusalSink = Callable[[str, str, str], None]  # (channel, instId, OKX's message)
BadPushSink = Callable[[str, Timeframe | None, str], None]  # (instId, tf or None, raw text)


class RowCounter(Protocol):
    """Rows from OKX that did not parse (the health snapshot reports the count)."""

    count: int


class FundingExchange(FundingHistory, Protocol):
    """The calls `live.funding.FundingTracker` makes."""

    async def watch_funding(self, insts: Sequence[Instrument]) -> None: ...

    def forget_funding_subscriptions(self, insts: Sequence[Instrument]) -> None: ...

    async def fetch_funding_current(
        self, inst: Instrument, source: Source = "poll"
    ) -> FundingObservation: ...


class LiveExchange(FundingExchange, CandleHistory, Protocol):
    """The calls `live.collector.Collector` (and its membership mixin) makes."""

    @property
    def bad_rows(self) -> RowCounter: ...

    async def fetch_time(self) -> int: ...

    async def load_markets(self, *, reload: bool = False) -> set[str]: ...

    def funding_instruments(self, instruments: Sequence[Instrument]) -> list[Instrument]: ...

    def attach_sinks(
        self,
        on_candle: CandleSink,
        on_funding: FundingSink,
        on_refused: RefusalSink,
        on_bad_push: BadPushSink,
    ) -> None: ...

    async def watch_candles(self, series: Sequence[tuple[Instrument, Timeframe]]) -> None: ...

    def forget_candle_subscriptions(
        self, series: Sequence[tuple[Instrument, Timeframe]]
    ) -> None: ...

    def candle_connection(self) -> object | None: ...
