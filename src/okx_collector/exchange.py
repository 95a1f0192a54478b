"""The exchange layer: with `okx_ws` and `okx_answers`, the only modules that import ccxt.

REST and websockets go through one `ccxt.pro.okx` subclass (`okx_ws`; plain
`ccxt.async_support.okx`, REST only, when ccxt.pro cannot be imported) that also hands OKX's raw
candle rows, funding pushes and refused subscriptions to sinks. History is read through ccxt's
implicit endpoint methods with explicit, exclusive `before`/`after` bounds, and paged by what came
back (`paging.page_back`), never by the page size OKX is expected to allow: OKX has capped pages
below its documented maximum before (OKX.md §7). ccxt's exceptions are classified in one place,
`okx_answers`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from okx_collector.ccxt_lean import WS_IMPORT_ERROR
from okx_collector.errors import (
    EnvironmentProblem,
    ExchangeUnavailable,
)
from okx_collector.instruments import (
    Instrument,
    Resolution,
    instrument_from_market,
    resolve,
)
from okx_collector.models import (
    Candle,
    FundingObservation,
    FundingRate,
    RawCandle,
    Source,
    parse_okx_candle,
    parse_okx_funding_current,
    parse_okx_funding_history,
)
from okx_collector.okx_answers import BadRows, classified, okx_data
from okx_collector.okx_ws import (
    OkxRest,
    RefusalSink,
    RestObserver,
    make_ws_class,
)
from okx_collector.pacing import Pacer
from okx_collector.paging import page_back
from okx_collector.timeframes import Timeframe

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_LIMIT = 300  # rows asked per candle request, OKX's documented maximum on both endpoints
FUNDING_PAGE_LIMIT = 400  # rows asked per funding-history request
# OKX's REST bar names; 6h and longer ask for the UTC-aligned variants (OKX.md §5).
OKX_BARS = {
    "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m",
    "1h": "1H", "2h": "2H", "4h": "4H",
    "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc", "1w": "1Wutc",
}  # fmt: skip
# Websocket channels of 6h and longer are UTC+8-aligned on OKX: only these can be streamed as-is.
WS_TIMEFRAMES = frozenset({"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h"})
_CHANNEL_TO_TF = {"candle" + OKX_BARS[name]: Timeframe.parse(name) for name in WS_TIMEFRAMES}


# (inst_id, timeframe, open time of the pushed candle, the final candle if OKX confirmed it)
CandleSink = Callable[[str, Timeframe, int, Candle | None], None]
FundingSink = Callable[[str, FundingObservation], None]
# A push that could not be parsed: (inst_id, timeframe or None for funding, the raw row's text)
BadPushSink = Callable[[str, Timeframe | None, str], None]

_WS_CLASS = make_ws_class()


def _candle_ts(row: RawCandle) -> int:
    return row.candle.ts


def _funding_time(rate: FundingRate) -> int:
    return rate.funding_time


class OkxExchange:
    """Public OKX market data over REST (paced) and websockets, as typed records."""

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        *,
        rate_limit_scale: float = 1.0,
        timeout_ms: int = 10_000,
        keepalive_ms: int = 18_000,
    ) -> None:
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.pacer = Pacer(rate_limit_scale)
        config: dict[str, Any] = {
            "urls": {"api": {"rest": rest_url, "ws": ws_url}},
            # We pace per endpoint ourselves (pacing.py); ccxt's single bucket would be slower.
            "enableRateLimit": False,
            "timeout": timeout_ms,
            "options": {"fetchMarkets": {"types": ["spot", "swap"]}},
        }
        if _WS_CLASS is None:  # no ccxt.pro: REST only (`collect --mode poll`)
            self._rest = OkxRest(config)
        else:
            # One client for REST and websockets (a ccxt.pro client is a REST client too): the
            # markets of a thousand instruments are held once, not twice (~20 MB).
            config["streaming"] = {"keepAlive": keepalive_ms}
            # ccxt keeps the last OHLCVLimit candles of every watched series (1,000 by default:
            # ~200 MB after 17 hours of 1,000 series of 1m). The collector never reads them.
            config["options"]["OHLCVLimit"] = 1
            self._rest = _WS_CLASS(config)
        self._ws: Any = None  # the same client, once `attach_sinks` has armed it
        self.instruments: dict[str, Instrument] = {}  # listed now, by ccxt symbol
        self.listed: dict[str, Instrument] = {}  # listed now, by instId
        self.by_inst_id: dict[str, Instrument] = {}  # every instrument seen, by instId
        self.requests = 0  # REST requests sent, for benchmarks and heartbeats
        self.bad_rows = BadRows()

    @property
    def client(self) -> Any:
        """The ccxt client (REST, and websockets once armed), for `exchange_derived`."""
        return self._rest

    def observe_rest(self, observer: RestObserver | None) -> None:
        """Show every REST request and HTTP answer to `observer` (the run's metrics)."""
        self._rest.rest_observer = observer

    async def rest(
        self,
        endpoint: str,
        method: Callable[[dict[str, str]], Awaitable[Any]],
        params: dict[str, str],
        key: str = "",
    ) -> Any:
        """One REST request: in a slot of `endpoint`'s limit (per `key` where OKX counts per
        instrument), counted, with ccxt's errors classified (naming the instId asked for)."""
        async with self.pacer.slot(endpoint, key):
            with classified(params.get("instId")):
                response = await method(params)
        self.requests += 1
        return response

    def parsed(
        self, response: Any, endpoint: str, parse: Callable[[Any], T], label: str
    ) -> list[T]:
        """`endpoint`'s rows in `response`, parsed; a row that does not parse is reported (under
        `label`) and left out, so that the caller sees it as missing and asks again later."""
        rows = []
        for raw in okx_data(response, endpoint):
            try:
                rows.append(parse(raw))
            except (ValueError, LookupError, TypeError):
                self.bad_rows.report(label, raw)
        return rows

    # -- markets ---------------------------------------------------------------------------------

    async def load_markets(self, *, reload: bool = False) -> set[str]:
        """Load (`reload`: again) OKX's spot and swap instruments; return the instIds listed now.

        An instrument seen before and no longer listed (delisted) stays known by id, so that its
        stored data and late pushes can still be routed; `listed` holds only the current ones.
        """
        async with self.pacer.slot("instruments", "SPOT"), self.pacer.slot("instruments", "SWAP"):
            with classified():
                markets = await self._rest.load_markets(reload)
        self.requests += 2
        listed: dict[str, Instrument] = {}
        for market in markets.values():
            if market.get("spot") or market.get("swap"):
                inst = instrument_from_market(market)
                listed[inst.inst_id] = inst
                self.by_inst_id[inst.inst_id] = inst
        self.listed = listed
        self.instruments = {inst.symbol: inst for inst in listed.values()}
        return set(listed)

    def resolve(
        self, symbols: Sequence[str], stored: Collection[str] = (), *, allow_none: bool = False
    ) -> Resolution:
        """Configured symbols to listed instruments (see `instruments.resolve`)."""
        return resolve(symbols, self.listed, stored, allow_none=allow_none)

    def funding_instruments(self, instruments: Sequence[Instrument]) -> list[Instrument]:
        """Every configured perpetual, and the linear perpetual of every configured spot symbol."""
        out: list[Instrument] = []
        for inst in instruments:
            if inst.is_spot:
                base_quote = inst.symbol.split("/")
                perp = self.instruments.get(f"{inst.symbol}:{base_quote[1]}")
                if perp is not None and perp not in out:
                    out.append(perp)
            elif inst not in out:
                out.append(inst)
        return out

    # -- REST --------------------------------------------------------------------------------------

    async def quote_volumes(self, inst_types: Sequence[str]) -> dict[str, float]:
        """instId -> 24 h volume in quote currency, from OKX's tickers of these instTypes.

        `volCcy24h` is in quote currency for spot but in base currency for swaps (OKX v5 docs,
        market/tickers), so a swap's is converted at its last price.
        """
        out: dict[str, float] = {}
        for inst_type in inst_types:
            params = {"instType": inst_type}
            response = await self.rest("tickers", self._rest.public_get_market_tickers, params)
            for row in okx_data(response, "tickers"):
                try:
                    volume = float(row["volCcy24h"])
                    if inst_type != "SPOT":
                        volume *= float(row["last"])
                    out[str(row["instId"])] = volume
                except (ValueError, KeyError, TypeError):
                    self.bad_rows.report(f"{row!r:.40} ticker", row)
        return out

    async def fetch_time(self) -> int:
        """The exchange's current time, ms."""
        response = await self.rest("time", self._rest.public_get_public_time, {})
        return int(response["data"][0]["ts"])

    async def fetch_candles(
        self,
        inst: Instrument,
        tf: Timeframe,
        start: int,
        end: int,
        *,
        recent: bool,
        source: Source,
    ) -> list[RawCandle]:
        """Every candle whose open is in [start, end) (at most PAGE_LIMIT bars), oldest first.

        `recent` uses `market/candles` (latest 1,440 bars, its own rate limit) instead of
        `market/history-candles`. Rows may include the in-progress candle (confirmed False).
        OKX returns the newest rows of a window; when fewer come back than the window holds, the
        rest is asked for again, until the window is covered or OKX has nothing older (before
        the listing, or a hole in its data): a page cap below the documented 300 (OKX had 100
        until 2025) costs requests, never candles.
        """
        if end - start > PAGE_LIMIT * tf.ms:
            raise ValueError(f"a page holds at most {PAGE_LIMIT} bars")

        async def page(after: int) -> list[RawCandle]:
            return await self._candle_page(inst, tf, start, after, recent=recent, source=source)

        return await page_back(page, _candle_ts, start, end, keep=tf.is_aligned)

    async def _candle_page(
        self, inst: Instrument, tf: Timeframe, start: int, end: int, *, recent: bool, source: Source
    ) -> list[RawCandle]:
        """One request: what OKX returns of [start, end), parsed (see `parsed`)."""
        endpoint = "candles" if recent else "history-candles"
        params = {
            "instId": inst.inst_id,
            "bar": OKX_BARS[tf.name],
            "limit": str(PAGE_LIMIT),
            # OKX's bounds are exclusive: ts > before and ts < after.
            "before": str(start - 1),
            "after": str(end),
        }
        if recent:
            method = self._rest.public_get_market_candles
        else:
            method = self._rest.public_get_market_history_candles
        response = await self.rest(endpoint, method, params)
        return self.parsed(
            response,
            endpoint,
            lambda raw: parse_okx_candle(raw, inst.is_spot, source),
            f"{inst.inst_id} {tf.name}",
        )

    async def newest_open_before(self, inst: Instrument, tf: Timeframe, ts: int) -> int | None:
        """Open time of the newest candle older than `ts`, or None if OKX has none (pre-listing)."""
        params = {"instId": inst.inst_id, "bar": OKX_BARS[tf.name], "limit": "1", "after": str(ts)}
        method = self._rest.public_get_market_history_candles
        response = await self.rest("history-candles", method, params)
        opens = self.parsed(
            response, "history-candles", lambda row: int(row[0]), f"{inst.inst_id} {tf.name}"
        )
        opens = [t for t in opens if t < ts]
        return max(opens) if opens else None

    async def fetch_funding_history(
        self, inst: Instrument, start: int, end: int, source: Source = "backfill"
    ) -> list[FundingRate]:
        """Settled funding rates with funding_time in [start, end), oldest first; paged by what
        came back until OKX has nothing older in the range (its cap has changed before)."""

        async def page(after: int) -> list[FundingRate]:
            params = {
                "instId": inst.inst_id,
                "limit": str(FUNDING_PAGE_LIMIT),
                "before": str(start - 1),
                "after": str(after),
            }
            response = await self.rest(
                "funding-rate-history",
                self._rest.public_get_public_funding_rate_history,
                params,
                inst.inst_id,
            )
            return self.parsed(
                response,
                "funding-rate-history",
                lambda row: parse_okx_funding_history(row, source),
                f"{inst.inst_id} funding",
            )

        return await page_back(page, _funding_time, start, end)

    async def fetch_funding_current(
        self, inst: Instrument, source: Source = "poll"
    ) -> FundingObservation:
        response = await self.rest(
            "funding-rate",
            self._rest.public_get_public_funding_rate,
            {"instId": inst.inst_id},
            inst.inst_id,
        )
        data = okx_data(response, "funding-rate")
        if not data:
            raise ExchangeUnavailable(f"funding-rate for {inst.inst_id} came back empty")
        try:
            return parse_okx_funding_current(data[0], observed_at=0, source=source)
        except (ValueError, KeyError, TypeError):
            self.bad_rows.report(f"{inst.inst_id} funding", data[0])
            raise ExchangeUnavailable(f"funding-rate for {inst.inst_id} did not parse") from None

    # -- websockets ------------------------------------------------------------------------------

    @staticmethod
    def websocket_problem() -> str | None:
        """Why websockets cannot be used here, or None when they can."""
        if _WS_CLASS is None:
            return (
                f"ccxt.pro could not be imported ({WS_IMPORT_ERROR}); "
                "reinstall ccxt (pip install 'ccxt>=4.5.90') or use --mode poll"
            )
        return None

    def attach_sinks(
        self,
        on_candle: CandleSink,
        on_funding: FundingSink,
        on_refused: RefusalSink,
        on_bad_push: BadPushSink,
    ) -> None:
        """Arm the websocket client: raw pushes, refused subscriptions (channel, instId, OKX's
        message) and pushes that do not parse go to the sinks, on the event loop thread."""
        problem = self.websocket_problem()
        if problem:
            raise EnvironmentProblem(problem)
        ws = self._rest

        def candle_frame(message: dict[str, Any]) -> None:
            # Hot path (thousands of pushes a second): in-progress rows only need their ts; the
            # full parse is done for the confirmed row, about one push in a hundred.
            arg = message.get("arg") or {}
            tf = _CHANNEL_TO_TF.get(arg.get("channel", ""))
            inst = self.by_inst_id.get(arg.get("instId", ""))
            if tf is None or inst is None:
                return
            for row in message.get("data") or []:
                try:
                    if len(row) > 8 and row[8] == "1":
                        raw = parse_okx_candle(row, inst.is_spot, "ws")
                        on_candle(inst.inst_id, tf, raw.candle.ts, raw.candle)
                    else:
                        on_candle(inst.inst_id, tf, int(row[0]), None)
                except (ValueError, IndexError, TypeError):
                    self.bad_rows.report(f"{inst.inst_id} {tf.name} push", row)
                    on_bad_push(inst.inst_id, tf, repr(row))

        def funding_frame(message: dict[str, Any]) -> None:
            for row in message.get("data") or []:
                inst_id = str(row.get("instId", "")) if isinstance(row, dict) else ""
                try:
                    obs = parse_okx_funding_current(row, observed_at=0, source="ws")
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.bad_rows.report(f"{inst_id or '?'} funding push", row)
                    on_bad_push(inst_id, None, repr(row))
                    continue
                on_funding(inst_id, obs)

        def refused(channel: str, inst_id: str, message: str) -> None:
            self._forget_subscriptions(channel, inst_id)
            on_refused(channel, inst_id, message)

        ws.candle_sink = candle_frame
        ws.funding_sink = funding_frame
        ws.refusal_sink = refused
        self._ws = ws

    def _forget_subscriptions(self, channel: str, inst_id: str) -> None:
        """ccxt keeps a refused subscription marked as sent; forget it, so that a later watch
        naming the instrument (relisted, or refused for a passing reason) subscribes again."""
        inst = self.by_inst_id.get(inst_id)
        names = {inst_id} if inst is None else {inst_id, inst.symbol}
        for client in list(self._ws.clients.values()):
            for key in list(client.subscriptions):
                # The channel as a whole segment: "candle1m" must not match the hashes of
                # "mark-price-candle1m" or "index-candle1m" subscriptions.
                named = key.startswith(channel + ":") or f":{channel}:" in key
                if named and any(key.endswith(":" + name) for name in names):
                    del client.subscriptions[key]

    def forget_candle_subscriptions(self, series: Sequence[tuple[Instrument, Timeframe]]) -> None:
        """After a refusal ccxt could not attribute (it rejected every watch of the connection),
        forget the batch's subscriptions so that the next watch sends them again."""
        if self._ws is None:
            return
        for inst, tf in series:
            self._forget_subscriptions("candle" + OKX_BARS[tf.name], inst.inst_id)

    async def watch_candles(self, series: Sequence[tuple[Instrument, Timeframe]]) -> None:
        """Keep a batch of candle subscriptions alive; returns when any of them updates.

        Data arrives through the candle sink; this call surfaces connection errors (classified).
        """
        for _, tf in series:
            if tf.name not in WS_TIMEFRAMES:
                raise ValueError(f"{tf.name} candles are UTC+8-aligned on OKX websockets")
        with classified():
            await self._ws.watch_ohlcv_for_symbols([[i.symbol, tf.name] for i, tf in series])

    def hold_reading(self) -> Callable[[], None]:
        """Stop reading every websocket connection until the returned function is called: what
        arrives meanwhile waits in the socket buffer. The writer holds them while it writes a
        close (`live.writer`). Reaches aiohttp's protocol through ccxt's client, as ccxt itself
        does; a connection without it is not held."""
        held = []
        for client in list((self._ws.clients if self._ws is not None else {}).values()):
            conn = getattr(getattr(client, "connection", None), "_conn", None)
            protocol = getattr(conn, "protocol", None)
            if protocol is not None and hasattr(protocol, "pause_reading"):
                protocol.pause_reading()
                held.append(protocol)

        def release() -> None:
            for protocol in held:
                if getattr(protocol, "transport", None) is not None:
                    protocol.resume_reading()

        return release

    def candle_connection(self) -> object | None:
        """An identity for the current candle websocket connection (changes on reconnect)."""
        if self._ws is None:
            return None
        client = self._ws.clients.get(self.ws_url + "/business")
        return None if client is None or client.closed() else client

    async def watch_funding(self, insts: Sequence[Instrument]) -> None:
        """Keep a batch of funding-rate subscriptions alive (one subscribe request); returns on a
        push of any of them (data goes to the sink)."""
        with classified(insts[0].inst_id if len(insts) == 1 else None):
            await self._ws.watch_funding_rates([inst.symbol for inst in insts])

    def forget_funding_subscriptions(self, insts: Sequence[Instrument]) -> None:
        """Like `forget_candle_subscriptions`, for funding."""
        if self._ws is None:
            return
        for inst in insts:
            self._forget_subscriptions("funding-rate", inst.inst_id)

    async def close(self) -> None:
        """Close REST sessions and websocket connections; never raises."""
        try:
            await self._rest.close()
        except Exception as exc:
            log.debug("closing the exchange client failed: %s", exc)
