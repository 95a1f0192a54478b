"""OKX candle bars: names, lengths and calendar alignment (pure).

OKX spells its REST `bar` parameter and its WS channel suffix the same way. Bars up to 4H are the
same whatever the time zone; 6H and longer come in two flavours: `6H 12H 1D 1W` are aligned to
UTC+8 (Hong Kong) and `6Hutc 12Hutc 1Dutc 1Wutc` to UTC. ccxt asks REST for the `utc` flavour and
subscribes WS to the UTC+8 one (OKX.md gotcha 7).
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
_UTC8_MS = 8 * HOUR_MS
# 1970-01-01 was a Thursday: Monday 00:00 UTC is 4 days after the epoch modulo a week.
_MONDAY_MS = 4 * DAY_MS


@dataclass(frozen=True, slots=True)
class Bar:
    """One OKX bar: its name, its length, and the epoch offset its candles open at."""

    name: str  # OKX spelling: "15m", "1H", "1Dutc", "1D"
    ms: int  # candle length in ms
    offset: int  # candles open at offset + k * ms

    @property
    def minutes(self) -> int:
        """Number of 1m candles in one candle of this bar."""
        return self.ms // MINUTE_MS

    def floor(self, ts: int) -> int:
        """Open time of the candle containing `ts`."""
        return ts - (ts - self.offset) % self.ms

    def ceil(self, ts: int) -> int:
        """Open time of the first candle opening at or after `ts`."""
        f = self.floor(ts)
        return f if f == ts else f + self.ms


def _bar(name: str, ms: int, anchor: int = 0) -> Bar:
    return Bar(name, ms, anchor % ms)


# Every bar the simulator serves, by OKX name (REST `bar` values and WS `candle<bar>` suffixes).
BARS: dict[str, Bar] = {
    b.name: b
    for b in (
        _bar("1m", MINUTE_MS),
        _bar("3m", 3 * MINUTE_MS),
        _bar("5m", 5 * MINUTE_MS),
        _bar("15m", 15 * MINUTE_MS),
        _bar("30m", 30 * MINUTE_MS),
        _bar("1H", HOUR_MS),
        _bar("2H", 2 * HOUR_MS),
        _bar("4H", 4 * HOUR_MS),
        _bar("6H", 6 * HOUR_MS, -_UTC8_MS),
        _bar("12H", 12 * HOUR_MS, -_UTC8_MS),
        _bar("1D", DAY_MS, -_UTC8_MS),
        _bar("1W", WEEK_MS, _MONDAY_MS - _UTC8_MS),
        _bar("6Hutc", 6 * HOUR_MS),
        _bar("12Hutc", 12 * HOUR_MS),
        _bar("1Dutc", DAY_MS),
        _bar("1Wutc", WEEK_MS, _MONDAY_MS),
    )
}

# ccxt timeframe -> OKX bar, as ccxt's default `fetchOHLCV.timezone = "UTC"` maps it for REST.
CCXT_TIMEFRAMES: dict[str, str] = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1H",
    "2h": "2H",
    "4h": "4H",
    "6h": "6Hutc",
    "12h": "12Hutc",
    "1d": "1Dutc",
    "1w": "1Wutc",
}


def resolve_bar(name: str) -> Bar:
    """The bar for a ccxt timeframe ("1h", "1d": UTC-aligned) or an exact OKX bar name ("1D")."""
    okx_name = CCXT_TIMEFRAMES.get(name, name)
    try:
        return BARS[okx_name]
    except KeyError:
        valid = ", ".join(dict.fromkeys([*CCXT_TIMEFRAMES, *BARS]))
        raise ValueError(f"unknown timeframe {name!r}; valid: {valid}") from None
