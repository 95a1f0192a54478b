"""The exchange layer: the only module that imports ccxt.

REST and websockets go through one `ccxt.pro.okx` subclass (plain `ccxt.async_support.okx`, REST
only, when ccxt.pro cannot be imported) that also hands OKX's raw candle rows (with the `confirm`
flag and `volCcyQuote` that ccxt's parser drops, OKX.md §2.8) to a sink. History is read through
ccxt's implicit endpoint methods with explicit, exclusive `before`/`after` bounds, so that one page
is exactly the candles of one window (OKX.md §1.3 gotchas 4-6 do not apply). ccxt's exceptions are
classified in one place, `classify`.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt_async

from okx_collector.errors import (
    BadInput,
    EnvironmentProblem,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    NotOkxAnswer,
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
from okx_collector.pacing import Pacer
from okx_collector.timeframes import Timeframe

try:  # ccxt.pro ships with ccxt >= 4, but a trimmed install may lack it (or its websocket deps).
    import ccxt.pro as ccxt_pro

    WS_IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - depends on the installation
    ccxt_pro = None
    WS_IMPORT_ERROR = str(exc)

log = logging.getLogger(__name__)

PAGE_LIMIT = 300  # rows per candle request, OKX's maximum on both endpoints
FUNDING_PAGE_LIMIT = 400  # rows per funding-history request
# OKX's REST bar names; 6h and longer ask for the UTC-aligned variants (OKX.md §5).
OKX_BARS = {
    "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m",
    "1h": "1H", "2h": "2H", "4h": "4H",
    "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc", "1w": "1Wutc",
}  # fmt: skip
# Websocket channels of 6h and longer are UTC+8-aligned on OKX: only these can be streamed as-is.
WS_TIMEFRAMES = frozenset({"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h"})
_CHANNEL_TO_TF = {"candle" + OKX_BARS[name]: Timeframe.parse(name) for name in WS_TIMEFRAMES}


def classify(exc: BaseException) -> ExchangeError:
    """Map any exception from a ccxt call onto retryable or fatal (the one place that decides)."""
    if isinstance(exc, ExchangeError):
        return exc
    if isinstance(exc, _NotOkx):  # retryable (a proxy's error page passes); start-up tries 5 times
        return NotOkxAnswer(exc.url, exc.detail)
    message = f"{type(exc).__name__}: {exc}".strip()
    if len(message) > 300:
        message = message[:300] + "..."
    # NetworkError covers RateLimitExceeded, DDoSProtection, ExchangeNotAvailable (5xx, 50011 on
    # old ccxt), OnMaintenance and RequestTimeout; BadResponse is a garbled or empty answer.
    if isinstance(
        exc,
        ccxt_async.NetworkError | ccxt_async.BadResponse | TimeoutError | ConnectionError | OSError,
    ):
        return ExchangeUnavailable(message)
    if isinstance(exc, ccxt_async.BaseError):
        return ExchangeRejected(message)
    return ExchangeUnavailable(message)


@contextmanager
def _classified() -> Iterator[None]:
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


EXCERPT_CHARS = 64  # of a foreign answer's body, in its one-line description


def foreign_answer(status: int, headers: Any, body: Any, parsed: Any) -> str | None:
    """Why an HTTP answer is not one of OKX's API (None when it is): OKX answers every request,
    refusals and rate limits included, with a JSON object holding `code`. The description is one
    line: status, content type, and the body's start with its whitespace collapsed."""
    if isinstance(parsed, dict) and "code" in parsed:
        return None
    content_type = next(
        (str(v) for k, v in dict(headers or {}).items() if str(k).lower() == "content-type"), ""
    )
    kind = content_type.split(";")[0].strip() or "no content type"
    text = " ".join(str(body or "").split())
    if not text:
        return f"HTTP {status}, {kind}, empty body"
    excerpt = text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")
    return f'HTTP {status}, {kind}: "{excerpt}"'


class _NotOkx(ccxt_async.BadResponse):  # type: ignore[misc]
    """Raised inside a ccxt call for an answer that is not OKX's; `classify` maps it."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"{url}: {detail}")


class _OkxAnswersOnly:
    """Mixed into the ccxt client: an HTML page or foreign JSON raises `_NotOkx` within the call
    (ccxt would return the text, and the parse of it fail somewhere with a TypeError)."""

    def handle_errors(self, code: int, reason: str, url: str, method: str, headers: Any,
                      body: Any, response: Any, *rest: Any) -> Any:  # fmt: skip
        detail = foreign_answer(code, headers, body, response)
        if detail is not None:
            raise _NotOkx(url.split("?", 1)[0], detail)
        return super().handle_errors(  # type: ignore[misc]
            code, reason, url, method, headers, body, response, *rest
        )


class _OkxRest(_OkxAnswersOnly, ccxt_async.okx):  # type: ignore[misc]
    """The REST-only client (no ccxt.pro)."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """One OKX instrument as the collector needs it."""

    symbol: str  # ccxt unified symbol, e.g. "BTC/USDT:USDT"
    inst_id: str  # OKX instId, e.g. "BTC-USDT-SWAP"; also the store's directory name
    is_spot: bool

    @property
    def is_perpetual(self) -> bool:
        return not self.is_spot


# (inst_id, timeframe, open time of the pushed candle, the final candle if OKX confirmed it)
CandleSink = Callable[[str, Timeframe, int, Candle | None], None]
FundingSink = Callable[[str, FundingObservation], None]


FEED_EVERY_S = 1.0  # ccxt parses an in-progress push of a series at most this often


def _make_ws_class() -> Any:
    """A ccxt.pro okx client that also hands raw pushes to sinks (ccxt itself is unchanged)."""
    if ccxt_pro is None:  # pragma: no cover
        return None

    class OkxWithRawPushes(_OkxAnswersOnly, ccxt_pro.okx):  # type: ignore[misc]
        candle_sink: Callable[[dict[str, Any]], None] | None = None
        funding_sink: Callable[[dict[str, Any]], None] | None = None
        fed: dict[tuple[str, str], float]  # (channel, instId) -> last fed to ccxt; attach_sinks

        def handle_ohlcv(self, client: Any, message: dict[str, Any]) -> Any:
            if self.candle_sink is not None:
                self.candle_sink(message)
                if not self._feed_ccxt(message):
                    return None
            return super().handle_ohlcv(client, message)

        def _feed_ccxt(self, message: dict[str, Any]) -> bool:
            """Whether ccxt should parse this push too. The sink has the row; ccxt's parse and
            cache of it are work nobody reads, needed only to resolve the watch calls (which
            surface connection changes). So ccxt gets a push at most every FEED_EVERY_S per
            series: at OKX's cadence of 2-8 pushes a second this halves to eighths ccxt's share
            of the collector's CPU, and at a candle close, when a thousand confirmed rows arrive
            together, ccxt does not parse them while the writer needs the interpreter."""
            arg = message.get("arg") or {}
            key = (str(arg.get("channel")), str(arg.get("instId")))
            now = time.monotonic()
            if now - self.fed.get(key, -FEED_EVERY_S) < FEED_EVERY_S:
                return False
            self.fed[key] = now
            return True

        def handle_funding_rate(self, client: Any, message: dict[str, Any]) -> Any:
            if self.funding_sink is not None:
                self.funding_sink(message)
            return super().handle_funding_rate(client, message)

    return OkxWithRawPushes


_WS_CLASS = _make_ws_class()


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
            self._rest = _OkxRest(config)
        else:
            # One client for REST and websockets (a ccxt.pro client is a REST client too): the
            # markets of a thousand instruments are held once, not twice (~20 MB).
            config["streaming"] = {"keepAlive": keepalive_ms}
            # ccxt keeps the last OHLCVLimit candles of every watched series (1,000 by default:
            # ~200 MB after 17 hours of 1,000 series of 1m). The collector never reads them.
            config["options"]["OHLCVLimit"] = 1
            self._rest = _WS_CLASS(config)
        self._ws: Any = None  # the same client, once `attach_sinks` has armed it
        self.instruments: dict[str, Instrument] = {}  # by ccxt symbol
        self.by_inst_id: dict[str, Instrument] = {}
        self.requests = 0  # REST requests sent, for benchmarks and heartbeats

    # -- markets ---------------------------------------------------------------------------------

    async def load_markets(self) -> None:
        async with self.pacer.slot("instruments", "SPOT"), self.pacer.slot("instruments", "SWAP"):
            with _classified():
                markets = await self._rest.load_markets()
        self.requests += 2
        for market in markets.values():
            if market.get("spot") or market.get("swap"):
                inst = Instrument(market["symbol"], market["id"], bool(market.get("spot")))
                self.instruments[inst.symbol] = inst
                self.by_inst_id[inst.inst_id] = inst

    def resolve(self, symbols: Sequence[str]) -> list[Instrument]:
        """Map user symbols (`BTC/USDT`, `BTC/USDT:USDT` or OKX `BTC-USDT-SWAP`) to instruments."""
        resolved: list[Instrument] = []
        for raw in symbols:
            text = raw.strip().upper()
            inst = self.instruments.get(text) or self.by_inst_id.get(text)
            if inst is None:
                names = list(self.instruments)
                close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise BadInput(
                    f"unknown symbol {raw!r}: OKX lists no such spot or swap market{hint} "
                    "(use ccxt symbols such as BTC/USDT or BTC/USDT:USDT)"
                )
            if inst not in resolved:
                resolved.append(inst)
        return resolved

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

    async def fetch_time(self) -> int:
        """The exchange's current time, ms."""
        async with self.pacer.slot("time"):
            with _classified():
                response = await self._rest.public_get_public_time()
        self.requests += 1
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
        """One page: the candles whose open is in [start, end), at most 300 bars, oldest first.

        `recent` uses `market/candles` (latest 1,440 bars, its own rate limit) instead of
        `market/history-candles`. Rows may include the in-progress candle (confirmed False).
        """
        if end - start > PAGE_LIMIT * tf.ms:
            raise ValueError(f"a page holds at most {PAGE_LIMIT} bars")
        endpoint = "candles" if recent else "history-candles"
        params = {
            "instId": inst.inst_id,
            "bar": OKX_BARS[tf.name],
            "limit": str(PAGE_LIMIT),
            # OKX's bounds are exclusive: ts > before and ts < after.
            "before": str(start - 1),
            "after": str(end),
        }
        async with self.pacer.slot(endpoint):
            with _classified():
                if recent:
                    response = await self._rest.public_get_market_candles(params)
                else:
                    response = await self._rest.public_get_market_history_candles(params)
        self.requests += 1
        rows = [parse_okx_candle(r, inst.is_spot, source) for r in response.get("data") or []]
        rows = [r for r in rows if start <= r.candle.ts < end and tf.is_aligned(r.candle.ts)]
        rows.sort(key=lambda r: r.candle.ts)
        return rows

    async def newest_open_before(self, inst: Instrument, tf: Timeframe, ts: int) -> int | None:
        """Open time of the newest candle older than `ts`, or None if OKX has none (pre-listing)."""
        params = {"instId": inst.inst_id, "bar": OKX_BARS[tf.name], "limit": "1", "after": str(ts)}
        async with self.pacer.slot("history-candles"):
            with _classified():
                response = await self._rest.public_get_market_history_candles(params)
        self.requests += 1
        opens = [int(row[0]) for row in response.get("data") or [] if int(row[0]) < ts]
        return max(opens) if opens else None

    async def fetch_funding_history(
        self, inst: Instrument, start: int, end: int, source: Source = "backfill"
    ) -> list[FundingRate]:
        """Settled funding rates with funding_time in [start, end), oldest first."""
        out: dict[int, FundingRate] = {}
        after = end
        while True:
            params = {
                "instId": inst.inst_id,
                "limit": str(FUNDING_PAGE_LIMIT),
                "before": str(start - 1),
                "after": str(after),
            }
            async with self.pacer.slot("funding-rate-history", inst.inst_id):
                with _classified():
                    response = await self._rest.public_get_public_funding_rate_history(params)
            self.requests += 1
            page = [parse_okx_funding_history(r, source) for r in response.get("data") or []]
            for rate in page:
                if start <= rate.funding_time < end:
                    out[rate.funding_time] = rate
            if len(page) < FUNDING_PAGE_LIMIT:
                break
            oldest = min(r.funding_time for r in page)
            if oldest >= after:  # the server ignored `after`: stop rather than loop forever
                break
            after = oldest
        return [out[t] for t in sorted(out)]

    async def fetch_funding_current(
        self, inst: Instrument, source: Source = "poll"
    ) -> FundingObservation:
        async with self.pacer.slot("funding-rate", inst.inst_id):
            with _classified():
                response = await self._rest.public_get_public_funding_rate({"instId": inst.inst_id})
        self.requests += 1
        data = response.get("data") or []
        if not data:
            raise ExchangeUnavailable(f"funding-rate for {inst.inst_id} came back empty")
        return parse_okx_funding_current(data[0], observed_at=0, source=source)

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

    def attach_sinks(self, on_candle: CandleSink, on_funding: FundingSink) -> None:
        """Create the websocket client; raw pushes go to the sinks, on the event loop thread."""
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
                    log.warning("ignoring a malformed candle push for %s: %r", inst.inst_id, row)

        def funding_frame(message: dict[str, Any]) -> None:
            for row in message.get("data") or []:
                try:
                    obs = parse_okx_funding_current(row, observed_at=0, source="ws")
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring a malformed funding push: %r", row)
                    continue
                on_funding(str(row.get("instId", "")), obs)

        ws.fed = {}
        ws.candle_sink = candle_frame
        ws.funding_sink = funding_frame
        self._ws = ws

    async def watch_candles(self, series: Sequence[tuple[Instrument, Timeframe]]) -> None:
        """Keep a batch of candle subscriptions alive; returns when any of them updates.

        Data arrives through the candle sink; this call surfaces connection errors (classified).
        """
        for _, tf in series:
            if tf.name not in WS_TIMEFRAMES:
                raise ValueError(f"{tf.name} candles are UTC+8-aligned on OKX websockets")
        with _classified():
            await self._ws.watch_ohlcv_for_symbols([[i.symbol, tf.name] for i, tf in series])

    def candle_connection(self) -> object | None:
        """An identity for the current candle websocket connection (changes on reconnect)."""
        if self._ws is None:
            return None
        client = self._ws.clients.get(self.ws_url + "/business")
        return None if client is None or client.closed() else client

    async def watch_funding(self, inst: Instrument) -> None:
        """Keep a funding-rate subscription alive; returns on each push (data goes to the sink)."""
        with _classified():
            await self._ws.watch_funding_rate(inst.symbol)

    async def close(self) -> None:
        """Close REST sessions and websocket connections; never raises."""
        try:
            await self._rest.close()
        except Exception as exc:
            log.debug("closing the exchange client failed: %s", exc)
