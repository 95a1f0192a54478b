"""Funding rates of the perpetuals (pure).

Rates are integer multiples of 1e-16, the 16 decimals OKX writes. A settled rate is a function of
(seed, instId, fundingTime): a slow regime over settlements plus noise, capped at
+/- maxFundingRate.
`realizedRate` differs from it by a small, never-zero amount. Between settlements the live estimate
for the next one drifts and converges to the settled value as the settlement time approaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from okx_collector.simulator.instruments import Dec, Instrument, fmt_units
from okx_collector.simulator.noise import (
    I64,
    derive_salt,
    gaussian,
    hash2d,
    rehash,
    salts,
    unit,
    value_noise,
)

RATE_EXP = 16  # rates are integer counts of 1e-16
_ONE: int = 10**RATE_EXP
_BASE = 1e-4  # the 0.01 % clamp-free rate OKX pays most of the time
_INTEREST = "0.0001"
MINUTE_MS = 60_000
# OKX keeps about three months of funding history.
FUNDING_HISTORY_MS = 92 * 24 * 3_600_000


def fmt_rate(units: int) -> str:
    """A rate in 1e-16 units as OKX writes it ("0.0000182221218054")."""
    return fmt_units(units, RATE_EXP)


@dataclass(frozen=True)
class FundingModel:
    """Settled, realized and live-estimated funding for one perpetual."""

    inst: Instrument
    seed: int

    @property
    def interval(self) -> int:
        return self.inst.funding_interval_ms

    @property
    def cap(self) -> int:
        step = Dec.parse(self.inst.max_funding)
        scale: int = 10 ** (RATE_EXP - step.exp)
        return step.mult * scale

    def _salt(self, name: str) -> np.ndarray:
        return salts([derive_salt(self.seed, "funding", name, self.inst.inst_id)])

    def settled(self, times: list[int]) -> tuple[list[int], list[int]]:
        """(fundingRate, realizedRate) in 1e-16 units for settlement times (multiples of the
        interval)."""
        if not times:
            return [], []
        n: I64 = np.asarray(times, dtype=np.int64) // self.interval
        regime = value_noise(self._salt("slow"), n, 3)
        regime += 0.5 * value_noise(self._salt("slower"), n, 6)
        h = hash2d(self._salt("noise"), n)
        rate = _BASE * (1.0 + 2.5 * regime) + 4e-5 * gaussian(h)
        units = np.clip(np.rint(rate * _ONE), -self.cap, self.cap).astype(np.int64)
        # realized = rate * (1 +/- 0.2 %) plus 1..999e-16 so that it never equals the rate
        wobble = (unit(rehash(h)) * 2.0 - 1.0) * 0.002
        tiny = (rehash(rehash(h)) % np.uint64(999)).astype(np.int64) + 1
        realized = units + np.rint(units * wobble).astype(np.int64) + tiny
        return units[0].tolist(), realized[0].tolist()

    def settlement_times(self, start: int, end: int) -> list[int]:
        """Settlement times in [start, end), not before the listing."""
        first = max(start, self.inst.list_time)
        first = -(-first // self.interval) * self.interval
        return list(range(first, end, self.interval))

    def next_settlement(self, now_ms: int) -> int:
        """The first settlement strictly after `now_ms` (OKX's current `fundingTime`)."""
        return (now_ms // self.interval + 1) * self.interval

    def estimate(self, now_ms: int) -> int:
        """The live estimate (1e-16 units) of the rate settling at next_settlement(now_ms)."""
        t_next = self.next_settlement(now_ms)
        settled = self.settled([t_next])[0][0]
        remaining = (t_next - now_ms) / self.interval  # 1 just after a settlement -> 0 at the next
        minute = np.array([now_ms // MINUTE_MS], dtype=np.int64)
        drift = 1.5e-4 * float(value_noise(self._salt("drift"), minute, 5)[0, 0])
        units = settled + round(drift * remaining * _ONE)
        return max(-self.cap, min(self.cap, units))

    def current_row(self, now_ms: int) -> dict[str, str]:
        """The row of `GET /api/v5/public/funding-rate` (and of the WS funding-rate push)."""
        t_next = self.next_settlement(now_ms)
        est = self.estimate(now_ms)
        previous = self.settled([t_next - self.interval])[0][0]
        cap = fmt_rate(self.cap)
        return {
            "formulaType": "noRate",
            "fundingRate": fmt_rate(est),
            "fundingTime": str(t_next),
            "impactValue": "",
            "instId": self.inst.inst_id,
            "instType": "SWAP",
            "interestRate": _INTEREST,
            "maxFundingRate": cap,
            "method": "current_period",
            "minFundingRate": f"-{cap}",
            "nextFundingRate": "",
            "nextFundingTime": str(t_next + self.interval),
            "premium": fmt_rate(est - round(_BASE * _ONE)),
            "settFundingRate": fmt_rate(previous),
            "settState": "settled",
            "ts": str(now_ms),
        }

    def history_rows(self, times: list[int]) -> list[dict[str, str]]:
        """Rows of `GET /api/v5/public/funding-rate-history` for these settlement times, in the
        order given."""
        rates, realized = self.settled(times)
        return [
            {
                "formulaType": "noRate",
                "fundingRate": fmt_rate(r),
                "fundingTime": str(t),
                "instId": self.inst.inst_id,
                "instType": "SWAP",
                "method": "current_period",
                "realizedRate": fmt_rate(z),
            }
            for t, r, z in zip(times, rates, realized, strict=True)
        ]
