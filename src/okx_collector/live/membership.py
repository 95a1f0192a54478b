"""Which instruments the collector follows, as OKX lists, delists and refuses them.

A mixin of `Collector`, kept apart because it is one job: a refused subscription affects only the
instrument it names; an instrument that left OKX's list (two reloads in a row) is retired with one
WARNING and recorded; with selectors, a new listing joins from its first candle. The attributes it
uses are the collector's, declared in live/parts.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from okx_collector.errors import ExchangeError
from okx_collector.exchange import OKX_BARS, WS_TIMEFRAMES
from okx_collector.instruments import Instrument
from okx_collector.live.parts import CollectorParts
from okx_collector.live.series import SeriesState
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

REFUSED_RETRY_SECONDS = 600.0  # a subscription OKX refused for a listed instrument: ask again


class Membership(CollectorParts):
    """The collector's instrument events."""

    def on_refused(self, channel: str, inst_id: str, message: str) -> None:
        """OKX refused one subscription (60018): only that instrument is affected. It is served
        over REST and the instrument list is reloaded, to tell a delisting from a passing refusal
        (then it is subscribed again after REFUSED_RETRY_SECONDS)."""
        self.counters.count_refusal("funding" if channel == "funding-rate" else "candles")
        until = self.local.monotonic() + REFUSED_RETRY_SECONDS
        for state in self.states.values():
            if state.inst.inst_id == inst_id and ("candle" + OKX_BARS[state.tf.name]) == channel:
                state.refused_until = until
                self._needs_catchup.add(state.ident)
        self.funding.refused(inst_id, channel)
        log.warning(
            "OKX refused the %s subscription for %s (%s); serving it over REST and checking "
            "whether it was delisted",
            channel, inst_id, message[:120],
        )  # fmt: skip
        self.watch.check_soon()

    def on_bad_push(self, inst_id: str, tf: Timeframe | None, raw: str) -> None:
        """A push that did not parse (logged by the exchange layer): REST fetches that candle."""
        if tf is not None and (inst_id, tf.name) in self.states:
            self._needs_catchup.add((inst_id, tf.name))

    async def _on_instrument_list(self, listed: set[str]) -> None:
        """A fresh instrument list: retire what left it; with selectors, add what joined them."""
        tracked = self.members | {inst.inst_id for inst in self.funding.instruments}
        # Retired only when two reloads in a row miss it: one partial answer (an empty SWAP list)
        # must not end hundreds of series. The second reload is asked for at once.
        missing = tracked - listed
        confirmed = missing & self._missing_before
        self._missing_before = missing - confirmed
        self.funding.unlisted = set(self._missing_before)  # out of the streams until then
        if self._missing_before:
            self.watch.check_soon()
        # Every gone instrument leaves the streams before anything is awaited: ccxt's markets no
        # longer have them, and a watch naming one would fail its whole batch.
        gone = [self._retire(inst_id) for inst_id in sorted(confirmed)]
        if self._on_delisted is not None:
            for inst_id, noticed in gone:
                await self._on_delisted(inst_id, noticed)
        if self._expand is not None:
            try:
                chosen = await self._expand()
            except ExchangeError as exc:
                log.warning("selectors not re-evaluated (%s); trying at the next reload", exc)
                return
            for inst in chosen:
                if inst.inst_id not in self.members and inst.inst_id in listed:
                    self._add(inst)

    def _add(self, inst: Instrument) -> None:
        """A selector names a new instrument (a listing): collect it from its first candle (or
        from --since, for one that only now entered a top N), on the websocket."""
        first = self.options.since
        if inst.list_time is not None:
            first = max(first, inst.list_time)
        use_ws = self.options.mode != "poll"
        states = []
        for tf in self.timeframes:
            state = SeriesState(inst, tf, None, streamable=use_ws and tf.name in WS_TIMEFRAMES)
            state.polling = not state.streamable
            state.start = tf.ceil(first)
            state.last_push = self._now()  # stale counts from its subscription, not the run's start
            self.states[state.ident] = state
            self._needs_catchup.add(state.ident)
            states.append(state)
        self.retired.pop(inst.inst_id, None)
        self.members.add(inst.inst_id)
        funding = []
        if self.funding_on:
            funding = [f for f in self.exchange.funding_instruments([inst]) if self.funding.add(f)]
        self.counters.listed += 1
        log.warning(
            "%s joined the selection (listed %s): collecting %d series from %s%s",
            inst.inst_id,
            _iso(inst.list_time) if inst.list_time else "earlier",
            len(states),
            _iso(first),
            " and its funding" if funding else "",
        )
        self._start_streams(states, funding)

    def _retire(self, inst_id: str) -> tuple[str, int]:
        """OKX no longer lists `inst_id`: its series stop, their data stays (one WARNING).
        Returns (inst_id, exchange ms noticed) for the caller to record."""
        noticed = self._now()
        keys = [k for k, s in self.states.items() if s.inst.inst_id == inst_id]
        lasts = [t for k in keys if (t := self.states[k].last_closed) is not None]
        for key in keys:
            self.states.pop(key)
            self._needs_catchup.discard(key)
        self.funding.remove(inst_id)
        self.members.discard(inst_id)
        self.retired[inst_id] = noticed
        self.counters.delisted += 1
        last = f"; last candle {_iso(max(lasts))}" if lasts else ""
        log.warning(
            "%s is no longer listed by OKX (delisted; noticed %s%s): its %d series and funding "
            "stop, their data stays",
            inst_id, _iso(noticed), last, len(keys),
        )  # fmt: skip
        return inst_id, noticed


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
