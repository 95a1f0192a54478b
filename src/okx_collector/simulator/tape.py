"""Tickers and recent trades, derived from the same 1m path as the candles (pure).

Trades sit on a fixed grid (one every 617 ms), each a hash of (seed, instId, grid index), so a
trade looks the same in every answer. The 24 h ticker statistics aggregate the 1,440 closed 1m
bars before the current minute plus the in-progress minute.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from okx_collector.simulator.bars import DAY_MS, HOUR_MS, MINUTE_MS, resolve_bar
from okx_collector.simulator.market import Market
from okx_collector.simulator.noise import derive_salt
from okx_collector.simulator.path import aggregate, minute_bars, price_ticks

TRADE_SPACING_MS = 617
_DAY_MINUTES = 1440
_BATCH = 64  # instruments per vectorised 24 h computation
_STATS_CACHE = 4096

# (open, high, low, volume lots, traded value) of the 1,440 minutes before a minute
_DayStats = tuple[int, int, int, int, int]


class Tape:
    """Ticker and trade rows for a market."""

    def __init__(self, market: Market) -> None:
        self.market = market
        # (instId, end minute) -> 24 h statistics, least recently used first
        self._stats: OrderedDict[tuple[str, int], _DayStats] = OrderedDict()

    def _day_stats(self, inst_ids: Sequence[str], end_minute: int) -> list[_DayStats]:
        missing = [i for i in dict.fromkeys(inst_ids) if (i, end_minute) not in self._stats]
        for start in range(0, len(missing), _BATCH):
            chunk = missing[start : start + _BATCH]
            bars = minute_bars(
                self.market.path_params(chunk), end_minute - _DAY_MINUTES, _DAY_MINUTES
            )
            agg = aggregate(bars, _DAY_MINUTES)
            for row, inst_id in enumerate(chunk):
                self._stats[(inst_id, end_minute)] = (
                    agg.open[row][0],
                    agg.high[row][0],
                    agg.low[row][0],
                    agg.volume[row][0],
                    agg.value[row][0],
                )
        found = [self._stats[(i, end_minute)] for i in inst_ids]
        while len(self._stats) > _STATS_CACHE:
            self._stats.popitem(last=False)
        return found

    def tickers(self, inst_ids: Sequence[str], now_ms: int) -> list[dict[str, str]]:
        """`GET /api/v5/market/ticker(s)` rows at `now_ms`."""
        minute = now_ms // MINUTE_MS
        stats = self._day_stats(inst_ids, minute)
        bar = resolve_bar("1m")
        lives = self.market.live([(i, bar, minute * MINUTE_MS) for i in inst_ids])
        sod_utc0 = now_ms - now_ms % DAY_MS
        sod_utc8 = now_ms - (now_ms + 8 * HOUR_MS) % DAY_MS
        sod_minutes = np.array(
            sorted({sod_utc0 // MINUTE_MS, sod_utc8 // MINUTE_MS}), dtype=np.int64
        )
        sods = price_ticks(self.market.path_params(inst_ids), sod_minutes).tolist()
        rows = []
        for inst_id, (o24, h24, l24, v24, q24), live, sod in zip(
            inst_ids, stats, lives, sods, strict=True
        ):
            inst = self.market.instrument(inst_id)
            _, h, lo, last, v, q = live.at(now_ms)
            tick, lot = inst.tick, inst.lot
            by_minute = dict(zip(sod_minutes.tolist(), sod, strict=True))
            salt = derive_salt(self.market.seed, "ticker", inst_id, now_ms // 1000)
            rows.append(
                {
                    "instType": inst.inst_type,
                    "instId": inst_id,
                    "last": tick.fmt(last),
                    "lastSz": lot.fmt(1 + salt % 50),
                    "askPx": tick.fmt(last + 1),
                    "askSz": lot.fmt(1 + (salt >> 8) % 5000),
                    "bidPx": tick.fmt(last),
                    "bidSz": lot.fmt(1 + (salt >> 24) % 5000),
                    "open24h": tick.fmt(o24),
                    "high24h": tick.fmt(max(h24, h)),
                    "low24h": tick.fmt(min(l24, lo)),
                    "volCcy24h": (
                        inst.base_step.fmt(v24 + v)
                        if inst.is_swap
                        else inst.quote_step.fmt(q24 + q)
                    ),
                    "vol24h": lot.fmt(v24 + v),
                    "ts": str(now_ms),
                    "sodUtc0": tick.fmt(by_minute[sod_utc0 // MINUTE_MS]),
                    "sodUtc8": tick.fmt(by_minute[sod_utc8 // MINUTE_MS]),
                }
            )
        return rows

    def trades(self, inst_id: str, now_ms: int, limit: int) -> list[dict[str, str]]:
        """`GET /api/v5/market/trades` rows: the latest `limit` trades, newest first."""
        inst = self.market.instrument(inst_id)
        bar = resolve_bar("1m")
        last_k = now_ms // TRADE_SPACING_MS
        ks = list(range(last_k, max(last_k - limit, 0), -1))
        opens = sorted({bar.floor(k * TRADE_SPACING_MS) for k in ks})
        lives = dict(zip(opens, self.market.live([(inst_id, bar, o) for o in opens]), strict=True))
        per_trade = max(1, int(inst.base_volume_per_min / float(inst.base_step)) // 40)
        rows = []
        for k in ks:
            ts = k * TRADE_SPACING_MS
            px = lives[bar.floor(ts)].at(ts)[3]
            salt = derive_salt(self.market.seed, "trade", inst_id, k)
            rows.append(
                {
                    "instId": inst_id,
                    "side": "buy" if salt & 1 else "sell",
                    "sz": inst.lot.fmt(1 + (salt >> 1) % (2 * per_trade)),
                    "px": inst.tick.fmt(px),
                    "tradeId": str(k),
                    "ts": str(ts),
                }
            )
        return rows
