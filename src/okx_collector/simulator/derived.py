"""Mark-price candles, index candles and open interest, derived from the market's path (pure).

- **Mark price** of a perpetual: its own 1m path (the last-trade price) times exp(a small, smooth
  seeded deviation, ~1.5e-4), with wicks a third of the last-trade wicks (OKX's mark price is an
  average, so it spikes less than trades). So a mark close sits near the last close.
- **Index** `BASE-QUOTE` (a perpetual's `uly`/`instFamily`, or a spot pair's id): the shared path
  of the base currency without the perpetual's basis, times exp(another small deviation, ~1e-4),
  wicks a quarter of the trade wicks. So the index sits near the mark, off by the perpetual's
  seeded basis.
- **Open interest** of a perpetual: a seeded multiplicative walk on a 3 s grid (OKX pushes it every
  3 s when it changes), in hundredths of a contract; about one step in four leaves it unchanged.
  `oiCcy = oi * ctVal` (exact decimals), `oiUsd = oiCcy * mark price` at that instant.

Every value is a function of (seed, id, time) only, as for trade candles: a closed candle never
depends on the simulator's clock, and every bar is aggregated from the same 1m candles. Callers pass
"now" where it matters. `derived_market.DerivedMarket` holds the models of a market and the
expected values for tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import numpy as np

from okx_collector.simulator.bars import MINUTE_MS, Bar, resolve_bar
from okx_collector.simulator.instruments import Dec, Instrument, fmt_units
from okx_collector.simulator.noise import (
    F64,
    I64,
    U64,
    derive_salt,
    hash2d,
    salts,
    sub_salts,
    unit,
    value_noise,
)
from okx_collector.simulator.path import PathParams, minute_bars, price_ticks

PriceKind = Literal["mark", "index"]
# (open time, open, high, low, close) in ticks
RawPrice = tuple[int, int, int, int, int]
# (open time, open, high, low, close) as floats of the served strings
PriceTuple = tuple[int, float, float, float, float]
# (ts, oi contracts, oiCcy, oiUsd) as floats of the served strings
OiTuple = tuple[int, float, float, float]

_DEVIATION = {"mark": 1.5e-4, "index": 1.0e-4}  # log deviation from the path it follows
_WICK = {"mark": 1 / 3, "index": 1 / 4}  # share of the last-trade wicks kept
_LIVE_CACHE = 256  # in-progress candles kept per model
_MAX_MINUTES = 1 << 17  # minutes computed per vectorised batch

OI_STEP_MS = 3_000  # OKX: "pushed every 3 seconds when there are updates"
OI_EXP = 2  # open interest in hundredths of a contract
_OI_OCTAVES = 20  # lattice spacings 3 s .. 2**19 steps (~18 days)
_OI_SIGMA = 1.5e-4  # per-step log volatility of the walk
_OI_HOLD = 0.25  # share of steps at which open interest does not change
_OI_MAX_HOLD = 8  # a run of unchanged steps is at most this long
_OI_HOURS_OF_VOLUME = 10.0  # open interest level ~ this many hours of traded volume


def point_noise(row_salts: U64, t: I64, octave: int) -> F64:
    """`noise.value_noise` at scattered points, without its lattice over the whole range (so a
    page of daily entries does not compute millions of lattice points); the same values."""
    cell = t >> octave
    left = unit(hash2d(row_salts, cell)) * 2.0 - 1.0
    if octave == 0:
        return left
    right = unit(hash2d(row_salts, cell + 1)) * 2.0 - 1.0
    frac = (t & ((1 << octave) - 1)).astype(np.float64) * (1.0 / (1 << octave))
    blend = frac * frac * (3.0 - 2.0 * frac)
    return left + (right - left) * blend[None, :]


def _factor(kind: PriceKind, dev_salts: U64, t: I64, scattered: bool = False) -> F64:
    """exp(deviation) of each row (salt) at minutes `t` (contiguous, or `scattered` points)."""
    amp = _DEVIATION[kind]
    fn = point_noise if scattered else value_noise
    dev = fn(sub_salts(dev_salts, 0), t, 2) * amp
    dev += fn(sub_salts(dev_salts, 1), t, 7) * (0.6 * amp)
    factor: F64 = np.exp(dev)
    return factor


def _price_minutes(
    kind: PriceKind, params: PathParams, dev_salts: U64, first_minute: int, count: int
) -> I64:
    """1m candles of each row from minute `first_minute` on: shape (rows, 4, count), o, h, l, c
    (ticks). Element-wise throughout, so a row's values do not depend on the other rows."""
    m = minute_bars(params, first_minute, count)
    t = np.arange(first_minute, first_minute + count + 1, dtype=np.int64)
    factor = _factor(kind, dev_salts, t)
    # The path's close of minute i is its open of minute i + 1, and both take factor[i + 1]:
    # closes chain into opens as for trade candles.
    o = np.rint(m.open * factor[:, :-1]).astype(np.int64)
    c = np.rint(m.close * factor[:, 1:]).astype(np.int64)
    up = m.high - np.maximum(m.open, m.close)
    down = np.minimum(m.open, m.close) - m.low
    wick = _WICK[kind]
    h = np.maximum(o, c) + np.rint(up * wick).astype(np.int64)
    low = np.maximum(np.minimum(o, c) - np.rint(down * wick).astype(np.int64), 1)
    return np.stack([o, h, low, c], axis=1)


class PriceModel:
    """Mark-price candles of one perpetual, or index candles of one index."""

    def __init__(self, kind: PriceKind, key: str, params: PathParams, tick: Dec, seed: int) -> None:
        self.kind, self.key, self.tick = kind, key, tick
        self._params = params
        self._dev = salts([derive_salt(seed, kind, "deviation", key)])
        self._live: OrderedDict[tuple[str, int], PriceLive] = OrderedDict()

    def opens(self, minutes: Sequence[int]) -> list[int]:
        """The open in ticks of each 1m candle (= the price at that minute's first instant)."""
        t = np.asarray(minutes, dtype=np.int64)
        if len(t) == 0:
            return []
        path = price_ticks(self._params, t)[0]
        factor = _factor(self.kind, self._dev, t, scattered=True)[0]
        out: list[int] = np.rint(path * factor).astype(np.int64).tolist()
        return out

    def minutes(self, first_minute: int, count: int) -> I64:
        """1m candles from minute `first_minute` on: shape (4, count), rows o, h, l, c (ticks)."""
        one: I64 = _price_minutes(self.kind, self._params, self._dev, first_minute, count)[0]
        return one

    def closed_raw(self, bar: Bar, first_open: int, count: int) -> list[RawPrice]:
        """`count` consecutive candles from `first_open` (a bar boundary), ascending."""
        out: list[RawPrice] = []
        per = bar.minutes
        step = max(1, _MAX_MINUTES // per)
        for done in range(0, max(0, count), step):
            n = min(step, count - done)
            start = first_open + done * bar.ms
            m = self.minutes(start // MINUTE_MS, n * per).reshape(4, n, per)
            out.extend(
                zip(
                    range(start, start + n * bar.ms, bar.ms),
                    m[0, :, 0].tolist(),
                    m[1].max(axis=1).tolist(),
                    m[2].min(axis=1).tolist(),
                    m[3, :, -1].tolist(),
                    strict=True,
                )
            )
        return out

    def live(self, bar: Bar, open_ts: int) -> PriceLive:
        """The candle of `bar` opening at `open_ts`, at any instant of its period."""
        return price_lives([(self, bar, open_ts)])[0]

    def _cached(self, key: tuple[str, int]) -> PriceLive | None:
        found = self._live.get(key)
        if found is not None:
            self._live.move_to_end(key)
        return found

    def _keep(self, key: tuple[str, int], live: PriceLive) -> None:
        self._live[key] = live
        while len(self._live) > _LIVE_CACHE:
            self._live.popitem(last=False)

    def price_at(self, ts: int) -> int:
        """The price in ticks at instant `ts` (the in-progress 1m candle's close)."""
        bar = resolve_bar("1m")
        return self.live(bar, bar.floor(ts)).at(ts)[3]

    def row(self, ts: int, raw: tuple[int, int, int, int], confirm: str) -> list[str]:
        """OKX's `[ts, o, h, l, c, confirm]`, all strings."""
        fmt = self.tick.fmt
        return [str(ts), fmt(raw[0]), fmt(raw[1]), fmt(raw[2]), fmt(raw[3]), confirm]


class PriceLive:
    """One mark or index candle from its 1m candles: its state at any instant of its period."""

    __slots__ = ("_high", "_low", "_m", "close_ts", "open_ts")

    def __init__(self, open_ts: int, minutes: I64, high: I64, low: I64) -> None:
        """`minutes`: shape (4, n), o, h, l, c of the candle's n 1m bars; `high`, `low` the
        running maximum of their highs and minimum of their lows."""
        self.open_ts = open_ts
        self.close_ts: int = open_ts + minutes.shape[1] * MINUTE_MS
        self._m = minutes
        self._high = high
        self._low = low

    def final(self) -> tuple[int, int, int, int]:
        m = self._m
        return int(m[0, 0]), int(self._high[-1]), int(self._low[-1]), int(m[3, -1])

    def at(self, now_ms: int) -> tuple[int, int, int, int]:
        """(o, h, l, c) as the candle stands at `now_ms` (the final candle from its close on):
        the current minute's close moved part of the way from its open, wicks grown in
        proportion."""
        if now_ms >= self.close_ts:
            return self.final()
        k, rem = divmod(max(0, now_ms - self.open_ts), MINUTE_MS)
        f = rem / MINUTE_MS
        o, hk, lk, c = self._m[:, k].tolist()
        close = o + round((c - o) * f)
        high = min(hk, max(o, close) + round((hk - max(o, c)) * f))
        low = max(lk, min(o, close) - round((min(o, c) - lk) * f))
        if k:
            high, low = max(high, int(self._high[k - 1])), min(low, int(self._low[k - 1]))
        return int(self._m[0, 0]), high, low, close


def price_lives(keys: Sequence[tuple[PriceModel, Bar, int]]) -> list[PriceLive]:
    """The candle of each (model, bar, open time), as `PriceModel.live`: from the model's cache,
    or computed in one vectorised batch per (kind, bar, open time). One model at a time costs
    ~1 ms of numpy overhead for a few numbers, so thousands of series moving to their next
    candle at a close would stall the websocket pushes for seconds."""
    got: dict[tuple[int, str, int], PriceLive] = {}
    missing: dict[tuple[PriceKind, str, int], dict[int, PriceModel]] = {}
    bars: dict[str, Bar] = {}
    for model, bar, open_ts in keys:
        found = model._cached((bar.name, open_ts))
        if found is not None:
            got[(id(model), bar.name, open_ts)] = found
        else:
            missing.setdefault((model.kind, bar.name, open_ts), {})[id(model)] = model
            bars[bar.name] = bar
    for (kind, bar_name, open_ts), models in missing.items():
        batch = list(models.values())
        for model, live in zip(batch, _compute(kind, batch, bars[bar_name], open_ts), strict=True):
            model._keep((bar_name, open_ts), live)
            got[(id(model), bar_name, open_ts)] = live
    return [got[(id(model), bar.name, open_ts)] for model, bar, open_ts in keys]


def _compute(kind: PriceKind, models: list[PriceModel], bar: Bar, open_ts: int) -> list[PriceLive]:
    """The candles of `bar` opening at `open_ts` of these models (all of `kind`)."""
    out: list[PriceLive] = []
    per_batch = max(1, _MAX_MINUTES // bar.minutes)
    for start in range(0, len(models), per_batch):
        chunk = models[start : start + per_batch]
        params = PathParams.stack([m._params for m in chunk])
        dev = np.concatenate([m._dev for m in chunk])
        m = _price_minutes(kind, params, dev, open_ts // MINUTE_MS, bar.minutes)
        high = np.maximum.accumulate(m[:, 1], axis=1)
        low = np.minimum.accumulate(m[:, 2], axis=1)
        # copies: a cached candle must not keep its whole batch alive (the caches' bound)
        out.extend(
            PriceLive(open_ts, m[row].copy(), high[row].copy(), low[row].copy())
            for row in range(len(chunk))
        )
    return out


class OpenInterestModel:
    """Open interest of one perpetual: a seeded walk on OKX's 3 s update grid."""

    def __init__(self, inst: Instrument, mark: PriceModel, seed: int) -> None:
        self.inst, self.mark = inst, mark
        self._walk = salts([derive_salt(seed, "open-interest", inst.inst_id)])
        contracts = _OI_HOURS_OF_VOLUME * 60 * inst.base_volume_per_min / float(inst.ct_val)
        self._level = contracts * 10**OI_EXP
        self._ct_val = Dec.parse(inst.ct_val)

    def _changed_step(self, steps: I64) -> I64:
        """The step of the last change at or before each step (a quarter of steps hold)."""
        out = steps.copy()
        held = np.ones(len(steps), dtype=bool)
        for _ in range(_OI_MAX_HOLD):
            hold = unit(hash2d(sub_salts(self._walk, 99), out))[0] < _OI_HOLD
            held &= hold
            if not held.any():
                break
            out = np.where(held, out - 1, out)
        return out

    def units(self, ts: Sequence[int]) -> tuple[list[int], list[int]]:
        """(hundredths of a contract, time of the change) in force at each instant `ts`."""
        steps = self._changed_step(np.asarray(ts, dtype=np.int64) // OI_STEP_MS)
        lp = np.zeros((1, len(steps)))
        for k in range(_OI_OCTAVES):
            lp += point_noise(sub_salts(self._walk, k), steps, k) * (0.9 * 2.0 ** (k / 2))
        value = np.maximum(np.rint(self._level * np.exp(lp[0] * _OI_SIGMA)), 1).astype(np.int64)
        return value.tolist(), (steps * OI_STEP_MS).tolist()

    def strings(self, units: int, ts: int) -> tuple[str, str, str]:
        """(oi, oiCcy, oiUsd) as OKX writes them; oiUsd at the mark price at instant `ts`."""
        coin = Dec(1, OI_EXP) * self._ct_val
        usd = coin * self.mark.tick
        return (
            fmt_units(units, OI_EXP),
            coin.fmt(units),
            usd.fmt(units * self.mark.price_at(ts)),
        )

    def history_rows(self, times: Sequence[int]) -> list[list[str]]:
        """Rubik history entries `[ts, oi, oiCcy, oiUsd]`: the values in force at each instant
        (the mark for oiUsd at that instant too; `times` are minute boundaries)."""
        units, _ = self.units(times)
        marks = self.mark.opens([t // MINUTE_MS for t in times])
        coin = Dec(1, OI_EXP) * self._ct_val
        usd = coin * self.mark.tick
        return [
            [str(t), fmt_units(u, OI_EXP), coin.fmt(u), usd.fmt(u * m)]
            for t, u, m in zip(times, units, marks, strict=True)
        ]

    def row(self, ts: int, *, update_ts: bool) -> dict[str, str]:
        """The `public/open-interest` row (ts = `ts`) or the `open-interest` push (`update_ts`:
        ts = the time of the last change, as OKX's "time when the data was updated")."""
        (units,), (changed,) = self.units([ts])
        stamp = changed if update_ts else ts
        oi, coin, usd = self.strings(units, stamp)
        inst = self.inst
        return {"instId": inst.inst_id, "instType": "SWAP", "oi": oi, "oiCcy": coin,
                "oiUsd": usd, "ts": str(stamp)}  # fmt: skip
