"""The REST polling round of the live mark and index candle series (`live.derived`).

A round asks every series more than a bar behind for what it lacks, `POLL_WORKERS` series at a
time per price kind: mark and index candles are separate OKX endpoints, each limited on its own
and paced on its own by the exchange layer (`pacing.OKX_LIMITS`: 20 requests per 2 s for the
recent endpoints, 10 for the history ones). One request at a time left each endpoint idle for a
round trip between requests: a round after a long start-up catch-up (2,000 series behind) took
~200 s at OKX's latency. With enough requests in flight to cover a round trip at the endpoint's
rate, its pacer, not the round, sets the speed. A series is handled by one worker from its
request to its rows queued for the writer, so its rows reach the writer in order; rounds do not
overlap (`DerivedLive._loop` starts the next one once this one has returned).

A mixin of `DerivedLive`; the attributes are its own.
"""

from __future__ import annotations

import asyncio
import logging

from okx_collector.errors import ExchangeRejected, ExchangeUnavailable, InstrumentGone
from okx_collector.exchange import OKX_BARS
from okx_collector.exchange_derived import WS_CHANNEL_PREFIX, PriceKind
from okx_collector.instruments import Instrument
from okx_collector.live.derived_base import DerivedParts
from okx_collector.live.derived_parts import ITEM_KIND, work_through
from okx_collector.live.writer import Item
from okx_collector.timeframes import Timeframe

PriceSeries = tuple[PriceKind, Instrument, str, Timeframe]  # (kind, instrument, series id, tf)

log = logging.getLogger("okx_collector.collect")

POLL_GRACE_MS = 5_000  # a close not pushed this long after it is fetched over REST
# Series polled at once per price kind: OKX's 10 requests/s of an endpoint, at a round trip of up
# to 0.6 s (a series behind by less than 100 rows is one request). The pacer holds the rate.
POLL_WORKERS = 6


class PricePolling(DerivedParts):
    """The polling round of `DerivedLive`'s mark and index series."""

    price_series: list[PriceSeries]
    last: dict[tuple[str, str, str], int | None]
    first: dict[tuple[str, str, str], int]

    def _stored(self, key: tuple[str, str, str], ts: int) -> None:
        raise NotImplementedError

    async def _poll(self, now: int, stop: asyncio.Event) -> None:
        """REST for every mark/index series more than a bar behind (after a grace period, unless
        its subscription was refused), POLL_WORKERS series at a time per kind. Ends at `stop`:
        what was fetched and queued stays queued, the fetches under way are dropped (a later run
        asks them again from the newest stored candle), so a stop does not wait for a round of
        thousands of series at OKX's pace."""
        due = [s for s in self.price_series if self._poll_start(s, now) is not None]
        lanes = [([s for s in due if s[0] == price], POLL_WORKERS) for price in ("mark", "index")]

        async def poll_one(series: PriceSeries) -> None:
            await self._poll_series(series, now)

        await work_through(lanes, poll_one, stop)

    def _poll_start(self, series: PriceSeries, now: int) -> int | None:
        """Where a poll of `series` starts at `now`, or None when it is not due."""
        price, inst, sid, tf = series
        if inst.inst_id in self.gone:
            return None
        key = (price, sid, tf.name)
        last_closed = tf.floor(now) - tf.ms
        last = self.last.get(key)
        if last is not None and last >= last_closed:
            return None
        streamed = self.mode != "poll" and not self.refused.active(
            WS_CHANNEL_PREFIX[price] + OKX_BARS[tf.name], sid
        )
        in_grace = now - tf.floor(now) < POLL_GRACE_MS
        if streamed and in_grace and last is not None and last >= last_closed - tf.ms:
            return None  # only the newest close is missing: its push may still come
        if last is not None:
            return last + tf.ms
        return self.first.get(key, tf.floor(now) - 1440 * tf.ms)

    async def _poll_series(self, series: PriceSeries, now: int) -> None:
        """Fetch one series from where it stands (looked at again: a push or an earlier poll
        may have advanced it since the round began) and queue its closed candles."""
        price, inst, sid, tf = series
        start = self._poll_start(series, now)
        if start is None:
            return
        key = (price, sid, tf.name)
        try:
            rows = await self.derived.fetch_price_candles(
                price, inst, tf, start, tf.floor(now), source="poll"
            )
        except InstrumentGone as exc:
            self._gone(exc)
            return
        except (ExchangeUnavailable, ExchangeRejected) as exc:
            log.debug("%s %s %s poll failed: %s", price, sid, tf.name, exc)
            return
        self.refused.polled(WS_CHANNEL_PREFIX[price] + OKX_BARS[tf.name], sid)
        closed = [r.candle for r in rows if r.confirmed]
        if closed:
            await self.writer.put(Item(ITEM_KIND[price], sid, tf, closed))
            self._count(price, len(closed), "poll")
            self._stored(key, closed[-1].ts)
