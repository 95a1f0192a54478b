"""The records that flow from the exchange layer to the store, and their parsers from OKX rows.

Pure: stdlib only. OKX sends every number as a string; they are parsed once, here, at the edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

Source = Literal["backfill", "poll", "ws"]
SOURCES: tuple[Source, ...] = ("backfill", "poll", "ws")


class Candle(NamedTuple):
    """One closed OHLCV candle. `volume` is in base currency, `quote_volume` in quote currency."""

    ts: int  # open time, ms UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    source: Source


class RawCandle(NamedTuple):
    """A candle as OKX sent it, with the `confirm` flag that ccxt drops."""

    candle: Candle
    confirmed: bool  # OKX `confirm` == "1": the candle's period has ended


class FundingRate(NamedTuple):
    """One settled funding rate (OKX `public/funding-rate-history`)."""

    funding_time: int  # settlement time, ms UTC
    funding_rate: float  # OKX `fundingRate`
    realized_rate: float  # OKX `realizedRate`: what was actually paid
    source: Source


class FundingObservation(NamedTuple):
    """A live funding-rate reading (OKX `public/funding-rate` or the `funding-rate` channel)."""

    ts: int  # observed at, exchange time, ms UTC
    funding_time: int  # the settlement this rate applies to
    funding_rate: float
    next_funding_time: int | None
    next_funding_rate: float | None
    source: Source


class PriceCandle(NamedTuple):
    """One mark-price or index candle (OKX `[ts, o, h, l, c, confirm]`: no volume).

    Prices in the quote currency of the perpetual (mark) or the index (`BTC-USDT`: USDT). `open` is
    the price at the period's first instant, `close` at its last (the next candle's `open`), `high`
    and `low` the extremes over the period, as OKX computes its mark price or index.
    """

    ts: int  # open time, ms UTC; the candle covers [ts, ts + timeframe)
    open: float
    high: float
    low: float
    close: float
    source: Source


class RawPriceCandle(NamedTuple):
    """A mark-price or index candle as OKX sent it, with its `confirm` flag."""

    candle: PriceCandle
    confirmed: bool  # OKX `confirm` == "1": the candle's period has ended


class OpenInterest(NamedTuple):
    """Open interest of one perpetual: the values in force at instant `ts`.

    Sources differ in what `ts` is (OKX v5 docs): `public/open-interest` (poll) gives the time the
    answer was made, the `open-interest` channel (ws) the time the value last changed (OKX updates
    it every 3 s when it changes), the rubik history (backfill) each period's timestamp (that an
    entry holds the value at that instant, not at the period's end, is [UNVERIFIED] on OKX; the
    simulator serves it so).
    """

    ts: int  # ms UTC
    oi_contracts: float  # OKX `oi`: open interest in contracts
    oi_coin: float  # OKX `oiCcy`: the same in base currency (contracts x ctVal for linear swaps)
    oi_usd: float  # OKX `oiUsd`: the same in USD (at which price OKX values it is [UNVERIFIED])
    source: Source


def parse_okx_price_candle(row: Sequence[str], source: Source) -> RawPriceCandle:
    """Parse an OKX mark-price or index candle row `[ts, o, h, l, c, confirm]`."""
    candle = PriceCandle(
        int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), source
    )
    return RawPriceCandle(candle, len(row) > 5 and str(row[5]) == "1")


def parse_okx_open_interest(row: dict[str, str], source: Source) -> OpenInterest:
    """Parse a `public/open-interest` row or an `open-interest` push."""
    return OpenInterest(
        int(row["ts"]), float(row["oi"]), float(row["oiCcy"]), float(row["oiUsd"]), source
    )


def parse_okx_open_interest_history(row: Sequence[str], source: Source) -> OpenInterest:
    """Parse a rubik `contracts/open-interest-history` entry `[ts, oi, oiCcy, oiUsd]`."""
    return OpenInterest(int(row[0]), float(row[1]), float(row[2]), float(row[3]), source)


def parse_okx_candle(row: Sequence[str], is_spot: bool, source: Source) -> RawCandle:
    """Parse an OKX candle row `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`.

    `vol` is base currency for spot but contracts for derivatives, where `volCcy` is base currency;
    `volCcyQuote` is quote currency for both (OKX v5 docs, market/candles).
    """
    volume = row[5] if is_spot else row[6]
    quote_volume = row[7] if len(row) > 7 and row[7] != "" else row[6]
    candle = Candle(
        int(row[0]),
        float(row[1]),
        float(row[2]),
        float(row[3]),
        float(row[4]),
        float(volume),
        float(quote_volume),
        source,
    )
    confirmed = len(row) > 8 and str(row[8]) == "1"
    return RawCandle(candle, confirmed)


def _opt_int(value: object) -> int | None:
    return int(str(value)) if value not in (None, "") else None


def _opt_float(value: object) -> float | None:
    return float(str(value)) if value not in (None, "") else None


def parse_okx_funding_history(row: dict[str, str], source: Source) -> FundingRate:
    """Parse a `public/funding-rate-history` row."""
    return FundingRate(
        int(row["fundingTime"]),
        float(row["fundingRate"]),
        float(row["realizedRate"]),
        source,
    )


def parse_okx_funding_current(
    row: dict[str, str], observed_at: int, source: Source
) -> FundingObservation:
    """Parse a `public/funding-rate` row or a `funding-rate` push (`observed_at` if no `ts`)."""
    ts = _opt_int(row.get("ts")) or observed_at
    return FundingObservation(
        ts,
        int(row["fundingTime"]),
        float(row["fundingRate"]),
        _opt_int(row.get("nextFundingTime")),
        _opt_float(row.get("nextFundingRate")),
        source,
    )


def closed_candles(rows: Iterable[RawCandle]) -> list[Candle]:
    """The candles OKX marked final (`confirm=1`).

    REST answers carry the flag, so closed-ness never depends on our estimate of the exchange's
    clock: a clock running ahead could otherwise store an in-progress candle as final.
    """
    return [r.candle for r in rows if r.confirmed]
