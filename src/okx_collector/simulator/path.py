"""The 1-minute price and volume path of every instrument (pure, vectorised).

Model, per instrument (one row of every array):

- log price = sum over octaves k = 0..19 of a * 2**(k/2) * noise_k(t), where noise_k is value noise
  with a lattice every 2**k minutes (so increments scale like a random walk up to ~1 year and the
  price wanders around its level beyond that). The octaves below ~1.4 days are multiplied by a slow
  volatility regime, exp(0.5 * slow noise over ~3 and ~11 days): volatility clusters.
- A spot pair and its perpetual share that path (it is keyed by the base currency); the perpetual
  adds a small basis.
- Candle open = price at the minute's start, close = price at the next minute's start (so closes
  chain into opens), wicks are exponential excursions scaled by the regime, volume follows the
  regime, the move's size, a UTC day cycle, quieter weekends and lognormal noise.
- Prices are integer ticks, volumes integer lots; the minute's traded value is volume * VWAP ticks.

Everything at minute t is a function of (salts, t) only, computable without walking from an origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from okx_collector.simulator.instruments import Instrument
from okx_collector.simulator.noise import (
    F64,
    I64,
    U64,
    derive_salt,
    gaussian,
    hash2d,
    open_unit,
    rehash,
    salts,
    sub_salts,
    value_noise,
)

OCTAVES = 20  # lattice spacings 1 min .. 2**19 min (~1 year)
REGIME_OCTAVES = 11  # octaves below 2**11 min (~1.4 days) follow the volatility regime
_MINUTES_PER_YEAR = 525_960.0
# Makes the sum of octaves' increments about as large as a random walk with the nominal sigma.
_AMPLITUDE = 0.9
_BASIS = 4e-4  # perpetual-minus-spot log basis amplitude
_WICK = 0.35  # wick size in per-minute sigmas
_REGIME = 0.5  # log volatility swing of the regime


@dataclass(frozen=True)
class PathParams:
    """Per-instrument model parameters as arrays, one row per instrument."""

    path: U64  # salt of the shared log-price path (per base currency)
    basis: U64  # salt of the perpetual's basis
    minute: U64  # salt of per-minute wicks and volumes
    level: F64  # (S, 1) price level in ticks
    sigma: F64  # (S, 1) per-minute log-price volatility
    basis_amp: F64  # (S, 1) 0 for spot
    lots_per_min: F64  # (S, 1) average volume in lots per minute

    @classmethod
    def build(cls, seed: int, instruments: Sequence[Instrument]) -> PathParams:
        def col(values: list[float]) -> F64:
            return np.array(values, dtype=np.float64).reshape(-1, 1)

        return cls(
            path=salts([derive_salt(seed, "path", i.base) for i in instruments]),
            basis=salts([derive_salt(seed, "basis", i.inst_id) for i in instruments]),
            minute=salts([derive_salt(seed, "minute", i.inst_id) for i in instruments]),
            level=col([i.price / float(i.tick) for i in instruments]),
            sigma=col([i.annual_vol / _MINUTES_PER_YEAR**0.5 for i in instruments]),
            basis_amp=col([_BASIS if i.is_swap else 0.0 for i in instruments]),
            lots_per_min=col([i.base_volume_per_min / float(i.base_step) for i in instruments]),
        )

    @classmethod
    def stack(cls, parts: Sequence[PathParams]) -> PathParams:
        """The rows of several parameter sets, in order (for one vectorised computation)."""
        return cls(
            np.concatenate([p.path for p in parts]),
            np.concatenate([p.basis for p in parts]),
            np.concatenate([p.minute for p in parts]),
            np.concatenate([p.level for p in parts]),
            np.concatenate([p.sigma for p in parts]),
            np.concatenate([p.basis_amp for p in parts]),
            np.concatenate([p.lots_per_min for p in parts]),
        )

    def rows(self, idx: Sequence[int]) -> PathParams:
        """The parameters of a subset of instruments."""
        sel = np.asarray(idx, dtype=np.intp)
        return PathParams(
            self.path[sel],
            self.basis[sel],
            self.minute[sel],
            self.level[sel],
            self.sigma[sel],
            self.basis_amp[sel],
            self.lots_per_min[sel],
        )


@dataclass(frozen=True)
class MinuteBars:
    """1-minute candles, shape (instruments, minutes): ticks, lots, and VWAP ticks."""

    open: I64
    high: I64
    low: I64
    close: I64
    volume: I64
    vwap: I64


def _regime(p: PathParams, t: I64) -> F64:
    slow = value_noise(sub_salts(p.path, 100), t, 12)
    slow += 0.6 * value_noise(sub_salts(p.path, 101), t, 14)
    return np.exp(_REGIME * slow)


def log_path(p: PathParams, t: I64) -> tuple[F64, F64]:
    """Log price relative to the level, and the volatility regime, at ascending minutes `t`."""
    regime = _regime(p, t)
    fine = np.zeros((len(p.path), len(t)))
    coarse = np.zeros_like(fine)
    for k in range(OCTAVES):
        term = value_noise(sub_salts(p.path, k), t, k) * (_AMPLITUDE * 2.0 ** (k / 2))
        if k < REGIME_OCTAVES:
            fine += term
        else:
            coarse += term
    lp = (fine * regime + coarse) * p.sigma
    if np.any(p.basis_amp):
        basis = value_noise(sub_salts(p.basis, 0), t, 3)
        basis += 0.6 * value_noise(sub_salts(p.basis, 1), t, 9)
        lp += basis * p.basis_amp
    return lp, regime


def price_ticks(p: PathParams, t: I64) -> I64:
    """Price in ticks at the start of each minute in `t` (ascending)."""
    lp, _ = log_path(p, t)
    return _to_ticks(p, lp)


def _to_ticks(p: PathParams, lp: F64) -> I64:
    return np.maximum(np.rint(p.level * np.exp(lp)), 1.0).astype(np.int64)


def _season(minutes: I64) -> F64:
    """Volume's UTC day cycle (busiest around 14:00 UTC) and quieter weekends."""
    of_day = (minutes % 1440).astype(np.float64)
    day_cycle = 1.0 + 0.3 * np.cos(2.0 * np.pi * (of_day - 840.0) / 1440.0)
    weekday = (minutes // 1440 + 3) % 7  # 1970-01-01 was a Thursday (3); 5, 6 = weekend
    return day_cycle * np.where(weekday >= 5, 0.7, 1.0)


def minute_bars(p: PathParams, first_minute: int, count: int) -> MinuteBars:
    """The 1-minute candles opening at minutes first_minute .. first_minute + count - 1
    (minute = ms // 60_000)."""
    t = np.arange(first_minute, first_minute + count + 1, dtype=np.int64)
    lp, regime = log_path(p, t)
    price = _to_ticks(p, lp)
    op, cl = price[:, :-1], price[:, 1:]
    minutes = t[:-1]
    regime = regime[:, :-1]
    h1 = hash2d(p.minute, minutes)
    h2 = rehash(h1)
    h3 = rehash(h2)
    sigma_ticks = p.sigma * regime * op
    up = np.rint(-np.log(open_unit(h1)) * (_WICK * sigma_ticks)).astype(np.int64)
    down = np.rint(-np.log(open_unit(h2)) * (_WICK * sigma_ticks)).astype(np.int64)
    high = np.maximum(op, cl) + up
    low = np.maximum(np.minimum(op, cl) - down, 1)
    move = np.abs(cl - op) / (sigma_ticks + 1e-9)
    lots = (
        p.lots_per_min
        * regime**1.5
        * _season(minutes)[None, :]
        * np.exp(0.5 * gaussian(h3) - 0.125)
        * (0.55 + 0.45 * np.minimum(move, 6.0))
    )
    volume = np.rint(lots).astype(np.int64)
    vwap = (op + high + low + cl) // 4
    return MinuteBars(op, high, low, cl, volume, vwap)


# Traded value per minute (lots * ticks) is split at this bit so that sums over a week of
# minutes cannot overflow int64.
_SPLIT = 31
_LOW_MASK = (1 << _SPLIT) - 1


@dataclass(frozen=True)
class Aggregated:
    """Candles aggregated from 1m bars, one row per instrument, as Python ints (exact)."""

    open: list[list[int]]
    high: list[list[int]]
    low: list[list[int]]
    close: list[list[int]]
    volume: list[list[int]]  # lots
    value: list[list[int]]  # sum of lots * VWAP ticks


def aggregate(m: MinuteBars, per: int) -> Aggregated:
    """Group consecutive runs of `per` minutes: first open, max high, min low, last close, sums."""
    s, n = m.open.shape
    shape = (s, n // per, per)
    value = m.volume * m.vwap
    if value.size and int(value.max()) >= 1 << 62:
        raise OverflowError("minute traded value too large for int64; lower the volume level")
    hi = (value >> _SPLIT).reshape(shape).sum(axis=2).tolist()
    lo = (value & _LOW_MASK).reshape(shape).sum(axis=2).tolist()
    return Aggregated(
        open=m.open.reshape(shape)[:, :, 0].tolist(),
        high=m.high.reshape(shape).max(axis=2).tolist(),
        low=m.low.reshape(shape).min(axis=2).tolist(),
        close=m.close.reshape(shape)[:, :, -1].tolist(),
        volume=m.volume.reshape(shape).sum(axis=2).tolist(),
        value=[
            [(a << _SPLIT) + b for a, b in zip(rh, rl, strict=True)]
            for rh, rl in zip(hi, lo, strict=True)
        ],
    )
