"""The mark, index and open-interest models of a `Market`, and their expected values for tests
(pure; the models are in `derived`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from okx_collector.simulator.bars import Bar, resolve_bar
from okx_collector.simulator.derived import (
    OiTuple,
    OpenInterestModel,
    PriceModel,
    PriceTuple,
)
from okx_collector.simulator.instruments import Instrument
from okx_collector.simulator.market import Market
from okx_collector.simulator.noise import derive_salt, salts

REFUSABLE_CHANNELS = ("mark-price-candle", "index-candle", "open-interest")


class DerivedMarket:
    """The mark, index and open-interest models of a `Market`, built on first use."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._mark: dict[str, PriceModel] = {}
        self._index: dict[str, PriceModel] = {}
        self._oi: dict[str, OpenInterestModel] = {}
        # (channel, id) subscriptions answered 60018 while listed (`refuse`); a bad-day switch.
        self.refused: set[tuple[str, str]] = set()

    # -- bad days -----------------------------------------------------------------------------

    def refuse(self, channel: str, series_id: str, refused: bool = True) -> None:
        """Answer 60018 to subscriptions of `channel` (`mark-price-candle`, `index-candle`: any
        bar; `open-interest`) for `series_id` (a perpetual, or an index for index candles),
        though it is listed: OKX does so for an id it does not serve on that channel (e.g.
        `channel:index-candle1m,instId:ETH-USDC-SWAP doesn't exist`, reported in
        github.com/burakoner/OKX.Api issue 34). Open subscriptions are not affected; REST is
        unchanged."""
        if channel not in REFUSABLE_CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(REFUSABLE_CHANNELS)}")
        if refused:
            self.refused.add((channel, series_id))
        else:
            self.refused.discard((channel, series_id))

    def refuses(self, channel: str, series_id: str) -> bool:
        """Whether a subscribe to `channel` (with its bar) for `series_id` is refused."""
        return any(
            channel.startswith(prefix) and (prefix, series_id) in self.refused
            for prefix in REFUSABLE_CHANNELS
        )

    # -- lookups ------------------------------------------------------------------------------

    @staticmethod
    def index_of(inst: Instrument) -> str:
        """The index behind an instrument: `BTC-USDT` for BTC-USDT and BTC-USDT-SWAP."""
        return f"{inst.base}-{inst.quote}"

    def index_instruments(self, index_id: str) -> list[Instrument]:
        """The listed instruments behind an index, perpetual first (none: no such index now)."""
        found = [i for i in self.market.listed() if self.index_of(i) == index_id]
        return sorted(found, key=lambda i: not i.is_swap)

    def index_known(self, index_id: str) -> bool:
        """Whether the index ever existed (some instrument, listed or not, is behind it)."""
        return any(self.index_of(i) == index_id for i in self.market.instruments())

    def mark(self, inst_id: str) -> PriceModel:
        """The mark-price model of a perpetual; KeyError for spot or unknown ids."""
        model = self._mark.get(inst_id)
        if model is None:
            inst = self.market.instrument(inst_id)
            if not inst.is_swap:
                raise KeyError(inst_id)
            params = self.market.path_params([inst_id])
            model = PriceModel("mark", inst_id, params, inst.tick, self.market.seed)
            self._mark[inst_id] = model
        return model

    def index(self, index_id: str) -> PriceModel:
        """The index model; KeyError if no instrument was ever behind `index_id`."""
        model = self._index.get(index_id)
        if model is None:
            behind = sorted(
                (i for i in self.market.instruments() if self.index_of(i) == index_id),
                key=lambda i: not i.is_swap,
            )
            if not behind:
                raise KeyError(index_id)
            rep = behind[0]
            seed = self.market.seed
            params = dataclasses.replace(
                self.market.path_params([rep.inst_id]),
                basis_amp=np.zeros((1, 1)),  # the spot path: the index has no perpetual basis
                minute=salts([derive_salt(seed, "index-minute", index_id)]),
            )
            model = PriceModel("index", index_id, params, rep.tick, seed)
            self._index[index_id] = model
        return model

    def open_interest(self, inst_id: str) -> OpenInterestModel:
        """The open-interest model of a perpetual; KeyError for spot or unknown ids."""
        model = self._oi.get(inst_id)
        if model is None:
            inst = self.market.instrument(inst_id)
            model = OpenInterestModel(inst, self.mark(inst_id), self.market.seed)
            self._oi[inst_id] = model
        return model

    def first_open(self, model: PriceModel, bar: Bar) -> int:
        """The first candle served: the first opening at or after the earliest listTime behind
        the model (as trade candles)."""
        if model.kind == "mark":
            return bar.ceil(self.market.instrument(model.key).list_time)
        times = [i.list_time for i in self.market.instruments() if self.index_of(i) == model.key]
        return bar.ceil(min(times))

    # -- expected values for tests ------------------------------------------------------------

    def mark_candles(
        self, inst_id: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[PriceTuple]:
        """Mark candles opening in [start_ms, end_ms) (closed by `now_ms` if given), ascending."""
        return self._candles(self.mark(inst_id), timeframe, start_ms, end_ms, now_ms, inst_id)

    def index_candles(
        self, index_id: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[PriceTuple]:
        """Index candles opening in [start_ms, end_ms) (closed by `now_ms`), ascending."""
        return self._candles(self.index(index_id), timeframe, start_ms, end_ms, now_ms, None)

    def _candles(
        self,
        model: PriceModel,
        timeframe: str,
        start_ms: int,
        end_ms: int,
        now_ms: int | None,
        inst_id: str | None,
    ) -> list[PriceTuple]:
        bar = resolve_bar(timeframe)
        first = max(bar.ceil(start_ms), self.first_open(model, bar))
        end = end_ms if now_ms is None else min(end_ms, bar.floor(now_ms))
        if inst_id is not None and inst_id in self.market.delisted:
            end = min(end, bar.floor(self.market.delisted[inst_id]))
        count = max(0, -(-(end - first) // bar.ms))
        fmt = model.tick.fmt
        return [
            (r[0], float(fmt(r[1])), float(fmt(r[2])), float(fmt(r[3])), float(fmt(r[4])))
            for r in model.closed_raw(bar, first, count)
        ]

    def open_interest_history(
        self, inst_id: str, period: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[OiTuple]:
        """Rubik entries with ts in [start_ms, end_ms) (and <= now_ms), ascending: the values in
        force at each period's opening instant. `period`: an OKX bar (`5m`, `1H`, `1Dutc`)."""
        bar = resolve_bar(period)
        inst = self.market.instrument(inst_id)
        first = max(bar.ceil(start_ms), bar.ceil(inst.list_time))
        end = end_ms if now_ms is None else min(end_ms, now_ms + 1)
        if inst_id in self.market.delisted:
            end = min(end, self.market.delisted[inst_id] + 1)
        times = list(range(first, end, bar.ms))
        rows = self.open_interest(inst_id).history_rows(times)
        return [(int(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in rows]

    def open_interest_at(self, inst_id: str, ts: int) -> OiTuple:
        """(ts, oi, oiCcy, oiUsd) in force at instant `ts`, with oiUsd at the mark at `ts`."""
        model = self.open_interest(inst_id)
        (units,), _ = model.units([ts])
        oi, coin, usd = model.strings(units, ts)
        return ts, float(oi), float(coin), float(usd)
