"""Mark-price candles, index candles and open interest from OKX, as typed records.

Part of the exchange layer (it drives the same ccxt client as `exchange.OkxExchange`, through its
`client`, `rest` (paced, counted, classified requests), `parsed` and `bad_rows`). REST goes through
ccxt's implicit endpoint methods with explicit, exclusive bounds, paged by what came back, never by
the page size OKX is expected to allow (`paging.page_back`, as for trade candles); each endpoint is
paced at its own documented limit (`pacing.OKX_LIMITS`), so these run in parallel with the
trade-candle endpoints.

Websockets: ccxt.pro 4.5.90 has no watch method for `mark-price-candle<bar>`, `index-candle<bar>`
or `open-interest` (its `watch_ohlcv` only builds `candle<bar>` channels and its `handle_message`
drops every other candle-like channel), so the subscriptions go through ccxt's generic
`watch_multiple`, and the pushes reach a sink through `okx_ws`'s raw-push hook, with OKX's
`confirm` flag, as trade candles do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from okx_collector.errors import EnvironmentProblem, ExchangeUnavailable
from okx_collector.exchange import OKX_BARS, WS_TIMEFRAMES, BadPushSink, OkxExchange
from okx_collector.instruments import Instrument
from okx_collector.models import (
    OpenInterest,
    PriceCandle,
    RawPriceCandle,
    Source,
    parse_okx_open_interest,
    parse_okx_open_interest_history,
    parse_okx_price_candle,
)
from okx_collector.okx_answers import classified, okx_data
from okx_collector.okx_ws import DERIVED_CHANNEL_PREFIXES, RefusalSink
from okx_collector.paging import page_back
from okx_collector.timeframes import Timeframe

PriceKind = Literal["mark", "index"]
PRICE_KINDS: tuple[PriceKind, ...] = ("mark", "index")
PRICE_PAGE_LIMIT = 100  # rows asked per mark/index request: OKX's documented maximum
OI_PAGE_LIMIT = 100  # entries asked per rubik request: OKX's documented maximum
RECENT_BARS = 1440  # the recent endpoints keep the latest 1,440 rows
# (recent endpoint, history endpoint) = pacing keys and OKX paths under /api/v5/market/
_ENDPOINTS: dict[PriceKind, tuple[str, str]] = {
    "mark": ("mark-price-candles", "history-mark-price-candles"),
    "index": ("index-candles", "history-index-candles"),
}
WS_CHANNEL_PREFIX: dict[PriceKind, str] = {"mark": "mark-price-candle", "index": "index-candle"}
OI_CHANNEL = "open-interest"
PRICE_PATH = "/business"  # OKX's websocket path of the candle channels
OI_PATH = "/public"  # ... and of open interest
# Rubik periods: OKX's bars; 6h and longer as their UTC-aligned variants, as for candles.
OI_PERIODS = {name: bar for name, bar in OKX_BARS.items() if name not in ("1m", "3m")}
_CHANNEL_TO_TF = {
    prefix + OKX_BARS[name]: (kind, Timeframe.parse(name))
    for kind, prefix in WS_CHANNEL_PREFIX.items()
    for name in WS_TIMEFRAMES
}

# (kind, instId of the perpetual (mark) or the index (index), timeframe, open time, the final
#  candle if OKX confirmed it)
PriceCandleSink = Callable[[PriceKind, str, Timeframe, int, PriceCandle | None], None]
OpenInterestSink = Callable[[str, OpenInterest], None]


def _candle_ts(row: RawPriceCandle) -> int:
    return row.candle.ts


def _oi_ts(entry: OpenInterest) -> int:
    return entry.ts


def use_recent_endpoint(tf: Timeframe, start: int, now_ms: int) -> bool:
    """ccxt's rule (`fetch_ohlcv`): the recent endpoint when `start` is within its 1,440 rows."""
    return start >= now_ms - (RECENT_BARS - 1) * tf.ms


class OkxDerived:
    """Mark and index candles and open interest over an `OkxExchange`'s client and pacing."""

    def __init__(self, exchange: OkxExchange) -> None:
        self.ex = exchange

    def index_id(self, inst: Instrument) -> str:
        """The index behind an instrument: a perpetual's `instFamily` (its `uly`), a spot pair's
        own id (`BTC-USDT` for both BTC-USDT and BTC-USDT-SWAP)."""
        if inst.is_spot:
            return inst.inst_id
        market = (self.ex.client.markets or {}).get(inst.symbol) or {}
        info = market.get("info") or {}
        family = str(info.get("instFamily") or info.get("uly") or "")
        return family or inst.inst_id.removesuffix("-SWAP")

    def _series_id(self, kind: PriceKind, inst: Instrument) -> str:
        if kind == "mark":
            if inst.is_spot:
                raise ValueError(f"{inst.inst_id}: mark-price candles are collected for perpetuals")
            return inst.inst_id
        return self.index_id(inst)

    # -- REST: candles -----------------------------------------------------------------------

    async def fetch_price_candles(
        self,
        kind: PriceKind,
        inst: Instrument,
        tf: Timeframe,
        start: int,
        end: int,
        *,
        recent: bool | None = None,
        source: Source = "backfill",
    ) -> list[RawPriceCandle]:
        """Every mark (`kind="mark"`, perpetuals) or index candle opening in [start, end), oldest
        first; rows may include the candle in progress (confirmed False).

        `recent` True asks the recent endpoint (latest 1,440 rows), False the history endpoint;
        None starts on the recent one and switches to the history one for what it no longer
        holds. OKX returns the newest rows of a window: the window is paged from its end by what
        came back (a page cap below 100 costs requests, never candles) until it is covered or
        OKX has nothing older (before the listing).
        """
        series = self._series_id(kind, inst)
        use_recent = recent is not False

        async def page(after: int) -> list[RawPriceCandle]:
            return await self._price_page(kind, series, tf, start, after, use_recent, source)

        def exhausted() -> bool:
            nonlocal use_recent
            if use_recent and recent is None:  # older than the recent endpoint keeps
                use_recent = False
                return True
            return False

        return await page_back(
            page, _candle_ts, start, end, keep=tf.is_aligned, exhausted=exhausted
        )

    async def _price_page(
        self,
        kind: PriceKind,
        series: str,
        tf: Timeframe,
        start: int,
        end: int,
        recent: bool,
        source: Source,
    ) -> list[RawPriceCandle]:
        """One request: what OKX returns of [start, end), parsed (see `OkxExchange.parsed`)."""
        endpoint = _ENDPOINTS[kind][0 if recent else 1]
        params = {
            "instId": series,
            "bar": OKX_BARS[tf.name],
            "limit": str(PRICE_PAGE_LIMIT),
            "before": str(start - 1),  # OKX's bounds are exclusive: ts > before, ts < after
            "after": str(end),
        }
        client = self.ex.client
        method = {
            "mark-price-candles": client.public_get_market_mark_price_candles,
            "history-mark-price-candles": client.public_get_market_history_mark_price_candles,
            "index-candles": client.public_get_market_index_candles,
            "history-index-candles": client.public_get_market_history_index_candles,
        }[endpoint]
        response = await self.ex.rest(endpoint, method, params)
        return self.ex.parsed(
            response,
            endpoint,
            lambda raw: parse_okx_price_candle(raw, source),
            f"{series} {kind} {tf.name}",
        )

    # -- REST: open interest -----------------------------------------------------------------

    async def fetch_open_interest(self, inst: Instrument, source: Source = "poll") -> OpenInterest:
        """Open interest of a perpetual now (OKX `public/open-interest`; `ts` = OKX's answer
        time)."""
        params = {"instType": "SWAP", "instId": inst.inst_id}
        response = await self.ex.rest(
            "open-interest", self.ex.client.public_get_public_open_interest, params, inst.inst_id
        )
        data = okx_data(response, "open-interest")
        if not data:
            raise ExchangeUnavailable(f"open-interest for {inst.inst_id} came back empty")
        try:
            return parse_okx_open_interest(data[0], source)
        except (ValueError, KeyError, TypeError):
            self.ex.bad_rows.report(f"{inst.inst_id} open interest", data[0])
            raise ExchangeUnavailable(f"open-interest for {inst.inst_id} did not parse") from None

    async def fetch_open_interest_history(
        self, inst: Instrument, period: Timeframe, start: int, end: int, source: Source = "backfill"
    ) -> list[OpenInterest]:
        """The rubik history entries of a perpetual with ts in [start, end), oldest first.

        OKX keeps the latest 1,440 entries per period (5m: 5 days, 1h: 60 days, 1d: ~4 years,
        but only from early 2024); `begin`/`end` are exclusive and entries come newest first,
        at most 100 a request: paged from `end` by what came back until nothing older comes.
        """
        bar = OI_PERIODS.get(period.name)
        if bar is None:
            raise ValueError(f"OKX keeps no open-interest history for {period.name} periods")

        async def page(before_end: int) -> list[OpenInterest]:
            params = {
                "instId": inst.inst_id,
                "period": bar,
                "limit": str(OI_PAGE_LIMIT),
                "begin": str(start - 1),
                "end": str(before_end),
            }
            response = await self.ex.rest(
                "open-interest-history",
                self.ex.client.public_get_rubik_stat_contracts_open_interest_history,
                params,
                inst.inst_id,
            )
            return self.ex.parsed(
                response,
                "open-interest-history",
                lambda row: parse_okx_open_interest_history(row, source),
                f"{inst.inst_id} open interest history",
            )

        return await page_back(page, _oi_ts, start, end)

    # -- websockets --------------------------------------------------------------------------

    def attach_sinks(
        self,
        on_price_candle: PriceCandleSink,
        on_open_interest: OpenInterestSink,
        on_bad_push: BadPushSink,
        on_refused: RefusalSink | None = None,
    ) -> None:
        """Arm the websocket client: raw mark/index candle and open-interest pushes go to the
        sinks, on the event loop thread (pushes that do not parse go to `on_bad_push`).

        `on_refused` gets the 60018 refusals of these channels (channel with its bar, id, OKX's
        message), ccxt's record of the subscription forgotten; the refusal sink armed before
        (the trade-candle collector's) keeps getting every other channel's."""
        problem = self.ex.websocket_problem()
        if problem:
            raise EnvironmentProblem(problem)
        bad_rows = self.ex.bad_rows
        client = self.ex.client
        if on_refused is not None:
            before: RefusalSink | None = getattr(client, "refusal_sink", None)

            def refused(channel: str, series: str, message: str) -> None:
                if channel.startswith(DERIVED_CHANNEL_PREFIXES):
                    self.forget_subscriptions([(channel, series)])
                    on_refused(channel, series, message)
                elif before is not None:
                    before(channel, series, message)

            client.refusal_sink = refused

        def derived_frame(message: dict[str, Any]) -> None:
            arg = message.get("arg") or {}
            channel, series = str(arg.get("channel", "")), str(arg.get("instId", ""))
            if channel == OI_CHANNEL:
                for row in message.get("data") or []:
                    try:
                        oi = parse_okx_open_interest(row, "ws")
                    except (ValueError, KeyError, TypeError, AttributeError):
                        bad_rows.report(f"{series} open interest push", row)
                        on_bad_push(series, None, repr(row))
                        continue
                    on_open_interest(series, oi)
                return
            found = _CHANNEL_TO_TF.get(channel)
            if found is None:
                return
            kind, tf = found
            for row in message.get("data") or []:
                try:
                    if len(row) > 5 and row[5] == "1":
                        raw = parse_okx_price_candle(row, "ws")
                        on_price_candle(kind, series, tf, raw.candle.ts, raw.candle)
                    else:
                        on_price_candle(kind, series, tf, int(row[0]), None)
                except (ValueError, IndexError, TypeError):
                    bad_rows.report(f"{series} {kind} {tf.name} push", row)
                    on_bad_push(series, tf, repr(row))

        self.ex.client.derived_sink = derived_frame

    async def watch_price_candles(
        self, kind: PriceKind, series: Sequence[tuple[Instrument, Timeframe]]
    ) -> None:
        """Keep a batch of mark or index candle subscriptions alive (one subscribe request);
        returns when any of them pushes (the data goes to the sink)."""
        args = [self._price_arg(kind, inst, tf) for inst, tf in series]
        await self._watch(PRICE_PATH, args, series[0][0].inst_id if len(series) == 1 else None)

    async def keep_price_candles(self, kind: PriceKind, one: tuple[Instrument, Timeframe]) -> None:
        """Watch one series of a batch `watch_price_candles` subscribed on the current connection:
        no request is sent (a lost connection rejects it at once), and ccxt's work is for one
        series instead of the batch's (see `live.derived_parts.follow_stream`)."""
        await self._watch(PRICE_PATH, [self._price_arg(kind, *one)], None)

    def _price_arg(self, kind: PriceKind, inst: Instrument, tf: Timeframe) -> dict[str, str]:
        if tf.name not in WS_TIMEFRAMES:
            raise ValueError(f"{tf.name} candles are UTC+8-aligned on OKX websockets")
        channel = WS_CHANNEL_PREFIX[kind] + OKX_BARS[tf.name]
        return {"channel": channel, "instId": self._series_id(kind, inst)}

    async def watch_open_interest(self, insts: Sequence[Instrument]) -> None:
        """Keep a batch of open-interest subscriptions alive (one subscribe request); returns on
        a push of any of them (the data goes to the sink)."""
        args = [{"channel": OI_CHANNEL, "instId": inst.inst_id} for inst in insts]
        await self._watch(OI_PATH, args, insts[0].inst_id if len(insts) == 1 else None)

    async def keep_open_interest(self, one: Instrument) -> None:
        """As `keep_price_candles`, for one perpetual of a subscribed open-interest batch."""
        await self._watch(OI_PATH, [{"channel": OI_CHANNEL, "instId": one.inst_id}], None)

    def connection(self, path: str) -> object | None:
        """An identity for the current websocket connection of `path` (PRICE_PATH, OI_PATH):
        another object after a reconnect, None while there is none."""
        client = self.ex.client.clients.get(self.ex.ws_url + path)
        return None if client is None or client.closed() else client

    async def _watch(self, path: str, args: list[dict[str, str]], inst_id: str | None) -> None:
        hashes = [f"{a['channel']}:{a['instId']}" for a in args]
        request = {"op": "subscribe", "args": args}
        with classified(inst_id):
            await self.ex.client.watch_multiple(self.ex.ws_url + path, hashes, request, hashes)

    def forget_subscriptions(self, channel_args: Sequence[tuple[str, str]]) -> None:
        """Forget (channel, instId) subscriptions ccxt keeps marked as sent, so that the next
        watch subscribes them again (after a refusal ccxt could not attribute)."""
        wanted = {f"{channel}:{inst_id}" for channel, inst_id in channel_args}
        for client in list(self.ex.client.clients.values()):
            for key in list(client.subscriptions):
                if key in wanted:
                    del client.subscriptions[key]
