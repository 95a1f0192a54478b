"""Funding rates of the perpetuals (pure).

Rates are integer multiples of 1e-16, the 16 decimals OKX writes. A settled rate is a function of
(seed, instId, fundingTime): a slow regime over settlements plus noise, capped at
+/- maxFundingRate.
`realizedRate` differs from it by a small, never-zero amount. Between settlements the live estimate
for the next one drifts and converges to the settled value as the settlement time approaches.
"""

from __future__ import annotations

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


class FundingModel:
    """Settled, realized and live-estimated funding for one perpetual.

    Settlement times follow a schedule of (start, interval) segments: the instrument's own
    interval from the epoch on, then each change made by `set_interval` (OKX changes an
    instrument's interval now and then; past settlements keep their old spacing, OKX.md §7).
    A segment's first settlement is its start; the next ones follow at its interval.
    """

    def __init__(self, inst: Instrument, seed: int) -> None:
        self.inst, self.seed = inst, seed
        self._base = inst.funding_interval_ms  # the noise grid: values never depend on changes
        self._segments: list[tuple[int, int]] = [(0, inst.funding_interval_ms)]

    @property
    def interval(self) -> int:
        """The interval in force for the newest segment (after any change)."""
        return self._segments[-1][1]

    @property
    def cap(self) -> int:
        step = Dec.parse(self.inst.max_funding)
        scale: int = 10 ** (RATE_EXP - step.exp)
        return step.mult * scale

    def _salt(self, name: str) -> np.ndarray:
        return salts([derive_salt(self.seed, "funding", name, self.inst.inst_id)])

    # -- the schedule --------------------------------------------------------------------------

    def set_interval(self, interval_ms: int, from_ms: int) -> int:
        """From the first settlement at or after `from_ms` on, settle every `interval_ms`; return
        that settlement time. Later changes already made are replaced."""
        start = self.first_at_or_after(from_ms)
        self._segments = [seg for seg in self._segments if seg[0] < start]
        self._segments.append((start, interval_ms))
        return start

    def _segment(self, t: int) -> tuple[int, int, int | None]:
        """(start, interval, end or None) of the segment holding time t."""
        k = max(i for i, seg in enumerate(self._segments) if seg[0] <= t or i == 0)
        start, step = self._segments[k]
        end = self._segments[k + 1][0] if k + 1 < len(self._segments) else None
        return start, step, end

    def first_at_or_after(self, t: int) -> int:
        """The first settlement time >= t (listing aside)."""
        start, step, end = self._segment(t)
        first = start + -(-(t - start) // step) * step
        return end if end is not None and first >= end else first

    def last_at_or_before(self, t: int) -> int:
        """The last settlement time <= t (listing aside)."""
        start, step, _ = self._segment(t)
        return start + (t - start) // step * step

    def settlement_times(self, start: int, end: int) -> list[int]:
        """Settlement times in [start, end), not before the listing."""
        out: list[int] = []
        t = self.first_at_or_after(max(start, self.inst.list_time))
        while t < end:
            out.append(t)
            t = self.first_at_or_after(t + 1)
        return out

    def next_settlement(self, now_ms: int) -> int:
        """The first settlement strictly after `now_ms` (OKX's current `fundingTime`)."""
        return self.first_at_or_after(now_ms + 1)

    # -- rates ---------------------------------------------------------------------------------

    def settled(self, times: list[int]) -> tuple[list[int], list[int]]:
        """(fundingRate, realizedRate) in 1e-16 units for settlement times."""
        if not times:
            return [], []
        t = np.asarray(times, dtype=np.int64)
        n: I64 = t // self._base
        regime = value_noise(self._salt("slow"), n, 3)
        regime += 0.5 * value_noise(self._salt("slower"), n, 6)
        # Times on the instrument's own grid keep the noise they always had; times a changed
        # interval adds get their own, so two settlements never share a rate by accident.
        on_grid = (t % self._base == 0)[None, :]
        h = np.where(on_grid, hash2d(self._salt("noise"), n), hash2d(self._salt("noise-h"), t))
        rate = _BASE * (1.0 + 2.5 * regime) + 4e-5 * gaussian(h)
        units = np.clip(np.rint(rate * _ONE), -self.cap, self.cap).astype(np.int64)
        # realized = rate * (1 +/- 0.2 %) plus 1..999e-16 so that it never equals the rate
        wobble = (unit(rehash(h)) * 2.0 - 1.0) * 0.002
        tiny = (rehash(rehash(h)) % np.uint64(999)).astype(np.int64) + 1
        realized = units + np.rint(units * wobble).astype(np.int64) + tiny
        return units[0].tolist(), realized[0].tolist()

    def estimate(self, now_ms: int) -> int:
        """The live estimate (1e-16 units) of the rate settling at next_settlement(now_ms)."""
        t_next = self.next_settlement(now_ms)
        settled = self.settled([t_next])[0][0]
        period = t_next - self.last_at_or_before(t_next - 1)
        remaining = (t_next - now_ms) / period  # 1 just after a settlement -> 0 at the next
        minute = np.array([now_ms // MINUTE_MS], dtype=np.int64)
        drift = 1.5e-4 * float(value_noise(self._salt("drift"), minute, 5)[0, 0])
        units = settled + round(drift * remaining * _ONE)
        return max(-self.cap, min(self.cap, units))

    def current_row(self, now_ms: int, processing_ms: int = 0) -> dict[str, str]:
        """The row of `GET /api/v5/public/funding-rate` (and of the WS funding-rate push).

        `processing_ms`: for that long after a settlement, OKX says `settState: processing`
        (the settlement is being booked; OKX.md §7)."""
        t_next = self.next_settlement(now_ms)
        t_prev = self.last_at_or_before(now_ms)
        est = self.estimate(now_ms)
        previous = self.settled([t_prev])[0][0]
        cap = fmt_rate(self.cap)
        processing = processing_ms > 0 and now_ms - t_prev < processing_ms
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
            # Always "": OKX only predicts the next rate for a few instruments (OKX.md §1.4).
            "nextFundingRate": "",
            "nextFundingTime": str(self.next_settlement(t_next)),
            "premium": fmt_rate(est - round(_BASE * _ONE)),
            "settFundingRate": fmt_rate(previous),
            "settState": "processing" if processing else "settled",
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
