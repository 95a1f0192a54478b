"""The simulated market: deterministic candles and funding for every instrument (pure, no I/O).

A closed candle is a function of (seed, instId, bar, open time) only: it never depends on the
simulator's clock, so two simulators with one seed serve identical history. Every bar is
aggregated from the same 1m path, so all timeframes agree. The market itself has no notion of
"now": callers pass it (the server never serves a candle that has not closed by its clock).

The test-facing methods (`candles`, `funding_history`, `funding_current`) return
`float(string served)`, so that values parsed by ccxt compare with `==`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from okx_collector.simulator.bars import BARS, MINUTE_MS, Bar, resolve_bar
from okx_collector.simulator.funding import FundingModel
from okx_collector.simulator.instruments import Instrument, default_instruments
from okx_collector.simulator.live import LiveCandle, RawOHLCV, running_aggregates
from okx_collector.simulator.path import PathParams, aggregate, minute_bars

# (open time, open, high, low, close ticks, volume lots, traded value in lots * ticks)
RawCandle = tuple[int, int, int, int, int, int, int]
# (open time, open, high, low, close, base volume, quote volume)
CandleTuple = tuple[int, float, float, float, float, float, float]

_MAX_BATCH_MINUTES = 1 << 17  # bounds the memory of one vectorised computation (~100 MB)
_LIVE_CACHE = 8192  # in-progress candles kept (one per subscribed series is enough)
_LIVE_CACHE_MINUTES = 1 << 22  # and at most this many 1m bars in them (~300 MB)


def okx_candle(inst: Instrument, ts: int, raw: RawOHLCV, confirm: str) -> list[str]:
    """The 9 strings OKX sends for a candle: ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm.

    Spot: vol = base, volCcy = quote. Swap: vol = contracts, volCcy = base (contracts * ctVal).
    volCcyQuote = quote for both.
    """
    o, h, lo, c, vol, value = raw
    tick = inst.tick
    quote = inst.quote_step.fmt(value)
    vol_ccy = inst.base_step.fmt(vol) if inst.is_swap else quote
    return [
        str(ts),
        tick.fmt(o),
        tick.fmt(h),
        tick.fmt(lo),
        tick.fmt(c),
        inst.lot.fmt(vol),
        vol_ccy,
        quote,
        confirm,
    ]


def candle_tuple(inst: Instrument, ts: int, raw: RawOHLCV) -> CandleTuple:
    """(ts, o, h, l, c, base volume, quote volume) as floats of the strings served."""
    o, h, lo, c, vol, value = raw
    t = inst.tick
    return (
        ts,
        float(t.fmt(o)),
        float(t.fmt(h)),
        float(t.fmt(lo)),
        float(t.fmt(c)),
        float(inst.base_step.fmt(vol)),
        float(inst.quote_step.fmt(value)),
    )


class Market:
    """Deterministic candles and funding for a fixed instrument list, by seed."""

    def __init__(
        self,
        seed: int = 1,
        extra_instruments: int = 0,
        instruments: Sequence[Instrument] | None = None,
    ) -> None:
        self.seed = seed
        self._instruments = list(instruments or default_instruments(extra_instruments))
        self._index = {inst.inst_id: i for i, inst in enumerate(self._instruments)}
        self._params = PathParams.build(seed, self._instruments)
        self._funding = {i.inst_id: FundingModel(i, seed) for i in self._instruments if i.is_swap}
        # (instId, bar name, open time) -> LiveCandle, least recently used first
        self._live: OrderedDict[tuple[str, str, int], LiveCandle] = OrderedDict()
        self._live_minutes = 0  # 1m bars held by the LiveCandles in _live
        # Bad days (set through the Simulator): instId -> exchange ms it was delisted; and the
        # instruments whose websocket channels push nothing (as on OKX when nobody trades).
        self.delisted: dict[str, int] = {}
        self.quiet: set[str] = set()

    # -- instruments ---------------------------------------------------------------------------

    def instruments(self, inst_type: str | None = None) -> list[Instrument]:
        """Every instrument ever listed (delisted ones too), or those of one instType."""
        return [i for i in self._instruments if inst_type in (None, i.inst_type)]

    def listed(self, inst_type: str | None = None) -> list[Instrument]:
        """The instruments OKX lists now (not delisted), or those of one instType."""
        return [i for i in self.instruments(inst_type) if i.inst_id not in self.delisted]

    def is_listed(self, inst_id: str) -> bool:
        """Whether OKX serves this instId now (known and not delisted)."""
        return inst_id in self._index and inst_id not in self.delisted

    def add_instrument(self, inst: Instrument) -> None:
        """List a new instrument (its history starts at its listTime)."""
        if inst.inst_id in self._index:
            raise ValueError(f"{inst.inst_id} is already listed (or was, and was delisted)")
        self._index[inst.inst_id] = len(self._instruments)
        self._instruments.append(inst)
        # Rebuilt whole: each row is a pure function of (seed, instrument), so old rows are equal.
        self._params = PathParams.build(self.seed, self._instruments)
        if inst.is_swap:
            self._funding[inst.inst_id] = FundingModel(inst, self.seed)

    def delist(self, inst_id: str, at_ms: int) -> None:
        """Mark an instrument delisted at `at_ms`; its history up to then stays available."""
        if not self.is_listed(inst_id):
            raise ValueError(f"{inst_id} is not listed")
        self.delisted[inst_id] = at_ms

    def instrument(self, inst_id: str) -> Instrument:
        """The instrument with this OKX id; KeyError if unknown."""
        return self._instruments[self._index[inst_id]]

    def __contains__(self, inst_id: object) -> bool:
        return inst_id in self._index

    def first_open(self, inst: Instrument, bar: Bar) -> int:
        """Open time of the first candle served: the first one opening at or after listTime."""
        return bar.ceil(inst.list_time)

    # -- candles (raw integers) ----------------------------------------------------------------

    def closed_raw(self, inst_id: str, bar: Bar, first_open: int, count: int) -> list[RawCandle]:
        """`count` consecutive candles from `first_open` (a bar boundary), ascending."""
        if count <= 0:
            return []
        params = self._params.rows([self._index[inst_id]])
        per = bar.minutes
        step = max(1, _MAX_BATCH_MINUTES // per)
        out: list[RawCandle] = []
        for done in range(0, count, step):
            n = min(step, count - done)
            start = first_open + done * bar.ms
            agg = aggregate(minute_bars(params, start // MINUTE_MS, n * per), per)
            out.extend(
                zip(
                    range(start, start + n * bar.ms, bar.ms),
                    agg.open[0],
                    agg.high[0],
                    agg.low[0],
                    agg.close[0],
                    agg.volume[0],
                    agg.value[0],
                    strict=True,
                )
            )
        return out

    def live(self, keys: Sequence[tuple[str, Bar, int]]) -> list[LiveCandle]:
        """The LiveCandle of each (instId, bar, open time); computed in one vectorised batch per
        (bar, open time) for those not cached."""
        missing: dict[tuple[str, int], dict[str, None]] = {}
        for inst_id, bar, open_ts in keys:
            key = (inst_id, bar.name, open_ts)
            if key in self._live:
                self._live.move_to_end(key)
            else:
                missing.setdefault((bar.name, open_ts), {})[inst_id] = None
        bars = {bar.name: bar for _, bar, _ in keys}
        for (bar_name, open_ts), ids in missing.items():
            self._compute_live(list(ids), bars[bar_name], open_ts)
        found = [self._live[(inst_id, bar.name, open_ts)] for inst_id, bar, open_ts in keys]
        while len(self._live) > _LIVE_CACHE or self._live_minutes > _LIVE_CACHE_MINUTES:
            (_, bar_name, _), _ = self._live.popitem(last=False)
            self._live_minutes -= BARS[bar_name].minutes
        return found

    def _compute_live(self, ids: list[str], bar: Bar, open_ts: int) -> None:
        per_batch = max(1, _MAX_BATCH_MINUTES // bar.minutes)
        for start in range(0, len(ids), per_batch):
            chunk = ids[start : start + per_batch]
            m = minute_bars(self.path_params(chunk), open_ts // MINUTE_MS, bar.minutes)
            stacked = np.stack([m.open, m.high, m.low, m.close, m.volume, m.vwap], axis=1)
            cum = running_aggregates(stacked)
            for row, inst_id in enumerate(chunk):
                key = (inst_id, bar.name, open_ts)
                self._live[key] = LiveCandle(open_ts, stacked[row], cum[row])
                self._live_minutes += bar.minutes

    def price_at(self, inst_id: str, ts: int) -> int:
        """The price in ticks at instant `ts` (the in-progress 1m candle's close)."""
        bar = resolve_bar("1m")
        return self.live([(inst_id, bar, bar.floor(ts))])[0].at(ts)[3]

    # -- candles for tests ---------------------------------------------------------------------

    def candles(
        self, inst_id: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[CandleTuple]:
        """Candles opening in [start_ms, end_ms), ascending, as (ts, o, h, l, c, base volume,
        quote volume) floats equal to the served strings.

        `timeframe` is a ccxt name ("15m", "1h", "1d": UTC-aligned) or an OKX bar ("1D": UTC+8).
        Only candles opening at or after listTime exist; with `now_ms`, only those closed by then;
        for a delisted instrument, only those closed by its delisting.
        """
        inst = self.instrument(inst_id)
        bar = resolve_bar(timeframe)
        first = max(bar.ceil(start_ms), self.first_open(inst, bar))
        end = end_ms if now_ms is None else min(end_ms, bar.floor(now_ms))
        if inst_id in self.delisted:
            end = min(end, bar.floor(self.delisted[inst_id]))
        count = max(0, -(-(end - first) // bar.ms))
        raw = self.closed_raw(inst_id, bar, first, count)
        return [candle_tuple(inst, r[0], r[1:]) for r in raw]

    # -- funding -------------------------------------------------------------------------------

    def funding(self, inst_id: str) -> FundingModel:
        """The funding model of a perpetual; KeyError for spot or unknown ids."""
        return self._funding[inst_id]

    def funding_history(
        self, inst_id: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[tuple[int, float, float]]:
        """Settlements with fundingTime in [start_ms, end_ms) (and <= now_ms when given),
        ascending: (fundingTime, fundingRate, realizedRate) as floats of the served strings.

        The REST route only serves the last `FUNDING_HISTORY_MS` (92 days) before the server's now.
        """
        model = self.funding(inst_id)
        end = end_ms if now_ms is None else min(end_ms, now_ms + 1)
        if inst_id in self.delisted:
            end = min(end, self.delisted[inst_id] + 1)
        rows = model.history_rows(model.settlement_times(start_ms, end))
        return [
            (int(r["fundingTime"]), float(r["fundingRate"]), float(r["realizedRate"])) for r in rows
        ]

    def funding_current(self, inst_id: str, now_ms: int) -> tuple[int, float, int]:
        """(fundingTime, fundingRate estimate, nextFundingTime) as served at `now_ms`."""
        row = self.funding(inst_id).current_row(now_ms)
        return int(row["fundingTime"]), float(row["fundingRate"]), int(row["nextFundingTime"])

    def swap_ids(self) -> Iterable[str]:
        """OKX ids of every perpetual listed now."""
        return [i for i in self._funding if i not in self.delisted]

    def path_params(self, inst_ids: Sequence[str]) -> PathParams:
        """Model parameters of these instruments (for vectorised computations over many)."""
        return self._params.rows([self._index[i] for i in inst_ids])
