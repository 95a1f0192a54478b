"""The simulated instrument list and exact decimal formatting (pure).

Prices are carried as integer tick counts and sizes as integer lot counts, so that every sum is
exact; `Dec` turns such a count back into the decimal string OKX would send.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from okx_collector.simulator.bars import HOUR_MS
from okx_collector.simulator.noise import derive_salt

# 2019-01-01T00:00:00Z: every instrument's listTime, so that multi-year backfills have data.
LIST_TIME_MS = 1_546_300_800_000


def fmt_units(n: int, exp: int) -> str:
    """`n * 10**-exp` as OKX writes it: no exponent, no trailing zeros ("43300", "0.0012")."""
    if exp <= 0:
        return str(n * 10**-exp)
    sign = "-" if n < 0 else ""
    digits = str(abs(n)).rjust(exp + 1, "0")
    head, tail = digits[:-exp], digits[-exp:].rstrip("0")
    return f"{sign}{head}.{tail}" if tail else f"{sign}{head}"


@dataclass(frozen=True, slots=True)
class Dec:
    """A positive decimal step such as a tick size: `mult * 10**-exp` ("0.5" is Dec(5, 1))."""

    mult: int
    exp: int

    @classmethod
    def parse(cls, text: str) -> Dec:
        sign, digits, exponent = Decimal(text).normalize().as_tuple()
        if sign or not isinstance(exponent, int):
            raise ValueError(f"not a positive decimal step: {text!r}")
        mult = int("".join(map(str, digits)))
        if exponent > 0:
            return cls(mult * 10**exponent, 0)
        return cls(mult, -exponent)

    def __float__(self) -> float:
        scale: int = 10**self.exp
        return self.mult / scale

    def __str__(self) -> str:
        return fmt_units(self.mult, self.exp)

    def fmt(self, count: int) -> str:
        """The decimal string of `count` steps."""
        return fmt_units(count * self.mult, self.exp)

    def __mul__(self, other: Dec) -> Dec:
        return Dec(self.mult * other.mult, self.exp + other.exp)


@dataclass(frozen=True)
class Instrument:
    """One simulated SPOT pair or linear USDT perpetual, with its market-model parameters."""

    inst_id: str  # OKX id: "BTC-USDT", "BTC-USDT-SWAP"
    inst_type: str  # "SPOT" | "SWAP"
    base: str
    quote: str
    tick_sz: str  # price step
    lot_sz: str  # size step (base currency for spot, contracts for swaps)
    min_sz: str
    ct_val: str  # base currency per contract; "" for spot
    price: float  # price level the path wanders around
    annual_vol: float  # volatility of the log price, per year
    base_volume_per_min: float  # average traded base currency per minute
    funding_interval_ms: int = 0  # 0 for spot
    max_funding: str = ""  # funding-rate cap (and -cap floor)
    lever: str = "10"
    list_time: int = LIST_TIME_MS

    @property
    def is_swap(self) -> bool:
        return self.inst_type == "SWAP"

    @property
    def symbol(self) -> str:
        """The ccxt unified symbol ccxt derives from this row ("BTC/USDT", "BTC/USDT:USDT")."""
        pair = f"{self.base}/{self.quote}"
        return f"{pair}:{self.quote}" if self.is_swap else pair

    @cached_property
    def tick(self) -> Dec:
        return Dec.parse(self.tick_sz)

    @cached_property
    def lot(self) -> Dec:
        return Dec.parse(self.lot_sz)

    @cached_property
    def base_step(self) -> Dec:
        """Base currency per lot: the lot itself for spot, lot * ctVal for swaps."""
        return self.lot * Dec.parse(self.ct_val) if self.is_swap else self.lot

    @cached_property
    def quote_step(self) -> Dec:
        """Quote currency per (lot * tick)."""
        return self.base_step * self.tick

    def okx_row(self) -> dict[str, str]:
        """The row `GET /api/v5/public/instruments` returns for this instrument."""
        swap = self.is_swap
        uly = f"{self.base}-{self.quote}"
        return {
            "alias": "",
            "auctionEndTime": "",
            "baseCcy": "" if swap else self.base,
            "category": "1",
            "ctMult": "1" if swap else "",
            "ctType": "linear" if swap else "",
            "ctVal": self.ct_val,
            "ctValCcy": self.base if swap else "",
            "expTime": "",
            "instFamily": uly if swap else "",
            "instId": self.inst_id,
            "instType": self.inst_type,
            "lever": self.lever,
            "listTime": str(self.list_time),
            "lotSz": self.lot_sz,
            "maxIcebergSz": "9999999999.0000000000000000",
            "maxLmtAmt": "20000000",
            "maxLmtSz": "9999999999" if not swap else "100000000",
            "maxMktAmt": "" if swap else "1000000",
            "maxMktSz": "12000" if swap else "1000000",
            "maxStopSz": "12000" if swap else "1000000",
            "maxTriggerSz": "9999999999.0000000000000000",
            "maxTwapSz": "9999999999.0000000000000000",
            "minSz": self.min_sz,
            "optType": "",
            "quoteCcy": "" if swap else self.quote,
            "ruleType": "normal",
            "settleCcy": self.quote if swap else "",
            "state": "live",
            "stk": "",
            "tickSz": self.tick_sz,
            "uly": uly if swap else "",
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view for the Python API and the admin routes."""
        return {
            "instId": self.inst_id,
            "instType": self.inst_type,
            "symbol": self.symbol,
            "tickSz": self.tick_sz,
            "lotSz": self.lot_sz,
            "minSz": self.min_sz,
            "ctVal": self.ct_val,
            "listTime": self.list_time,
            "fundingIntervalMs": self.funding_interval_ms,
        }


_8H = 8 * HOUR_MS
_4H = 4 * HOUR_MS

# (base, spot tick, spot lot, spot minSz, swap tick, swap lot, swap minSz, ctVal, price, vol,
#  base per minute, funding interval, max funding). Steps follow OKX's listings (ccxt's recorded
#  markets fixture, OKX.md §6); LINK settles funding every 4 h so that both cadences are covered.
_REAL = (
    (
        "BTC",
        "0.1",
        "0.00000001",
        "0.00001",
        "0.1",
        "0.1",
        "0.1",
        "0.01",
        62_000.0,
        0.55,
        9.0,
        _8H,
        "0.00375",
    ),
    (
        "ETH",
        "0.01",
        "0.000001",
        "0.0001",
        "0.01",
        "0.1",
        "0.1",
        "0.1",
        3_100.0,
        0.70,
        90.0,
        _8H,
        "0.00375",
    ),
    (
        "ADA",
        "0.0001",
        "0.0001",
        "10",
        "0.0001",
        "1",
        "1",
        "100",
        0.45,
        0.85,
        120_000.0,
        _8H,
        "0.0075",
    ),
    ("DOT", "0.001", "0.000001", "0.1", "0.001", "1", "1", "1", 6.5, 0.85, 4_000.0, _8H, "0.0075"),
    (
        "LINK",
        "0.001",
        "0.000001",
        "0.1",
        "0.001",
        "1",
        "1",
        "1",
        14.0,
        0.85,
        2_500.0,
        _4H,
        "0.0075",
    ),
)

# Perpetuals trade more than their spot pairs.
_SWAP_VOLUME_FACTOR = 2.5


def _pair(
    base: str,
    spot_tick: str,
    spot_lot: str,
    spot_min: str,
    swap_tick: str,
    swap_lot: str,
    swap_min: str,
    ct_val: str,
    price: float,
    vol: float,
    per_min: float,
    interval: int,
    max_funding: str,
) -> tuple[Instrument, Instrument]:
    spot = Instrument(
        f"{base}-USDT", "SPOT", base, "USDT", spot_tick, spot_lot, spot_min, "", price, vol, per_min
    )
    swap = Instrument(
        f"{base}-USDT-SWAP",
        "SWAP",
        base,
        "USDT",
        swap_tick,
        swap_lot,
        swap_min,
        ct_val,
        price,
        vol,
        per_min * _SWAP_VOLUME_FACTOR,
        interval,
        max_funding,
        lever="50",
    )
    return spot, swap


def _synthetic(i: int) -> tuple[Instrument, Instrument]:
    """The i-th synthetic pair (SIM0001-USDT and SIM0001-USDT-SWAP): a price between 0.01 and
    1000, ticks giving ~4-5 significant digits, contracts worth 1-10 USDT."""
    base = f"SIM{i:04d}"
    u = derive_salt(0, "synthetic", i) / 2**64
    price = 10 ** (-2 + 5 * u)
    mag = math.floor(math.log10(price))
    tick = fmt_units(1, 4 - mag)
    ct_val = fmt_units(1, mag)
    interval = _4H if i % 7 == 0 else _8H
    return _pair(
        base,
        tick,
        "0.0001",
        "0.1",
        tick,
        "1",
        "1",
        ct_val,
        price,
        0.9,
        3_000.0 / price,
        interval,
        "0.015",
    )


def default_instruments(extra: int = 0) -> list[Instrument]:
    """BTC, ETH, ADA, DOT, LINK spot and USDT perpetuals, then `extra` synthetic pairs."""
    out: list[Instrument] = []
    for spec in _REAL:
        out.extend(_pair(*spec))
    for i in range(1, extra + 1):
        out.extend(_synthetic(i))
    return out
