"""The ccxt okx clients the collector uses: ccxt itself, plus hooks.

ccxt is unchanged; the subclasses only add what OKX.md documents ccxt as lacking:
- an answer that is not OKX's (an HTML page, foreign JSON) raises `NotOkx` within the call (ccxt
  would return the text and a later parse fail with a TypeError);
- raw candle rows go to a sink, with the `confirm` flag and `volCcyQuote` ccxt's parser drops
  (OKX.md §2.8);
- raw funding pushes go to a sink;
- raw `mark-price-candle<bar>`, `index-candle<bar>` and `open-interest` pushes go to a sink, and
  resolve the watches of `channel:instId`: ccxt.pro 4.5.90 has no watch method for these channels
  and its `handle_message` drops them (it routes only channels starting with `candle`), so the
  exchange layer subscribes through ccxt's generic `watch_multiple`;
- a refused subscription (`60018`, "…channel:candle1m,instId:DOT-USDT doesn't exist") is handed to
  a sink naming the instrument, instead of ccxt's `handle_error_message`, which cannot tell which
  subscription failed (the frame has no id) and so rejects every pending watch on the connection
  (OKX.md §2.6, §7). The other subscriptions of the connection are untouched.

and they hold the markets leaner (`_LeanMarkets`): the raw fields read back, and one dict per
market. The markets of every listed instrument live as long as the process, twice over during a
reload of the instrument list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from okx_collector.ccxt_lean import ccxt_async, ccxt_pro

log = logging.getLogger("okx_collector.exchange")

# OKX error codes whose message names the refused channel and instrument (OKX.md §7).
REFUSAL_CODES = frozenset({"60018"})
_REFUSED = re.compile(r"channel:\s*([\w-]+)\s*,\s*instId:\s*([\w-]+)")

RefusalSink = Callable[[str, str, str], None]  # (channel, instId, OKX's message)
# Channels ccxt.pro does not handle, handed to the derived sink (exchange_derived).
DERIVED_CHANNEL_PREFIXES = ("mark-price-candle", "index-candle", "open-interest")


def derived_channel(message: object) -> str | None:
    """The channel of a data push on a derived channel, else None (acks, errors, other data)."""
    if not isinstance(message, dict) or "data" not in message:
        return None
    arg = message.get("arg")
    channel = arg.get("channel") if isinstance(arg, dict) else None
    if isinstance(channel, str) and channel.startswith(DERIVED_CHANNEL_PREFIXES):
        return channel
    return None


def _is_candle_data(message: object) -> bool:
    """A data push on a `candle<bar>` channel (what ccxt routes to handle_ohlcv): no `event`
    or `code` (acks and errors), an `arg` naming the channel."""
    if not isinstance(message, dict) or "data" not in message:
        return False
    if "event" in message or "code" in message:
        return False
    arg = message.get("arg")
    channel = arg.get("channel") if isinstance(arg, dict) else None
    return isinstance(channel, str) and channel.startswith("candle")


def awaited(client: Any, markets_by_id: dict[str, Any] | None, message: dict[str, Any]) -> bool:
    """Whether a watch call waits for this candle push (only then must ccxt parse it). The sink
    has the row; ccxt's parse and cache of it serve only to resolve watch calls, which the
    collector makes to see connection changes: once a batch is subscribed, it watches one series
    of it. So ccxt parses the pushes of about one series in a hundred, not every push: at a
    candle close, when thousands of confirmed rows arrive together, the interpreter is left to
    them and to the writer. The keys are ccxt's message hashes (ccxt.pro okx `handle_ohlcv`:
    `channel:instId` for `watch_ohlcv`, `multi:channel:symbol` for `watch_ohlcv_for_symbols`)."""
    futures = client.futures
    if not futures:
        return False
    arg = message.get("arg") or {}
    channel, inst_id = str(arg.get("channel")), str(arg.get("instId"))
    if f"{channel}:{inst_id}" in futures:
        return True
    listed = markets_by_id.get(inst_id) if markets_by_id else None
    if not listed:
        return False
    return f"multi:{channel}:{listed[0]['symbol']}" in futures


class RestObserver(Protocol):
    """Sees every REST request ccxt sends (`request`) and every HTTP answer (`answer`)."""

    def request(self, url: str) -> None: ...
    def answer(self, url: str, status: int) -> None: ...


def parse_refusal(message: object) -> tuple[str, str] | None:
    """(channel, instId) when `message` is an error frame that refuses one subscription."""
    if not isinstance(message, dict) or message.get("event") != "error":
        return None
    if str(message.get("code")) not in REFUSAL_CODES:
        return None
    found = _REFUSED.search(str(message.get("msg", "")))
    return (found.group(1), found.group(2)) if found else None


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


class NotOkx(ccxt_async.BadResponse):  # type: ignore[misc]
    """Raised inside a ccxt call for an answer that is not OKX's; `classify` maps it."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"{url}: {detail}")


class _OkxAnswersOnly:
    """Mixed into the ccxt client: an HTML page or foreign JSON raises `NotOkx` within the call
    (ccxt would return the text, and the parse of it fail somewhere with a TypeError).
    An observer, when set, sees every request and answer (the metrics of REST use)."""

    rest_observer: RestObserver | None = None

    async def fetch(self, url: str, method: str = "GET", headers: Any = None,
                    body: Any = None) -> Any:  # fmt: skip
        if self.rest_observer is not None:
            self.rest_observer.request(url)
        return await super().fetch(url, method, headers, body)  # type: ignore[misc]

    def on_rest_response(self, code: int, reason: str, url: str, *rest: Any) -> Any:
        if self.rest_observer is not None:
            self.rest_observer.answer(url, code)
        return super().on_rest_response(code, reason, url, *rest)  # type: ignore[misc]

    def handle_errors(self, code: int, reason: str, url: str, method: str, headers: Any,
                      body: Any, response: Any, *rest: Any) -> Any:  # fmt: skip
        detail = foreign_answer(code, headers, body, response)
        if detail is not None:
            raise NotOkx(url.split("?", 1)[0], detail)
        return super().handle_errors(  # type: ignore[misc]
            code, reason, url, method, headers, body, response, *rest
        )


# The raw instrument fields that are read back from a market's `info`: by ccxt's okx (instFamily
# and uly for index candles, ruleType for funding), by `instruments.instrument_from_market`
# (listTime, state) and `exchange_derived` (instFamily, uly). At most 10 keys: a dict's table
# doubles past that.
MARKET_INFO_KEYS = (
    "instId", "instType", "instFamily", "uly", "ruleType", "listTime", "state", "ctVal",
    "ctType", "settleCcy",
)  # fmt: skip


class _LeanMarkets:
    """Mixed into the ccxt client: each market keeps the raw fields above as its `info`, not
    OKX's whole instrument row (32 fields): about 4 MB less for 2,000 instruments, held as long
    as the process, and twice while the instrument list is reloaded (`load_markets(reload)`)."""

    markets: dict[str, Any]
    markets_by_id: dict[str, list[dict[str, Any]]]
    currencies: dict[str, Any]

    def parse_market(self, market: dict[str, Any]) -> dict[str, Any]:
        parsed: dict[str, Any] = super().parse_market(market)  # type: ignore[misc]
        parsed["info"] = {key: market[key] for key in MARKET_INFO_KEYS if key in market}
        return parsed

    def set_markets(self, markets: Any, currencies: Any = None) -> Any:
        # ccxt indexes by symbol each market extended with its defaults, and by id the same
        # market as parsed: two dicts per market. By id, the extended one too (every key of the
        # parsed one, with its value or, where it has none, ccxt's default): ~3 MB less for
        # 2,000 instruments.
        result = super().set_markets(markets, currencies)  # type: ignore[misc]
        by_symbol = self.markets
        self.markets_by_id = {
            market_id: [by_symbol.get(m["symbol"], m) for m in listed]
            for market_id, listed in self.markets_by_id.items()
        }
        # Likewise the currencies of the markets' bases and quotes, kept beside `currencies`
        # (read nowhere in ccxt): their entries in `currencies`, ~1.3 MB less per 1,000 bases.
        currencies = self.currencies
        for name in ("baseCurrencies", "quoteCurrencies"):
            kept = getattr(self, name) or {}
            setattr(self, name, {code: currencies.get(code, c) for code, c in kept.items()})
        return result


class OkxRest(_LeanMarkets, _OkxAnswersOnly, ccxt_async.okx):  # type: ignore[misc]
    """The REST-only client (no ccxt.pro)."""


class _FrameSkipping:
    """Mixed into ccxt's websocket client: a frame that cannot be handled (text that is not JSON,
    a cut-off frame) is skipped, counted and logged once, and the next frames are read. In ccxt
    the error escapes the callback that reads the next frame: the connection stays open but
    nothing more is read from it (no pushes, not even the pongs), until the keepalive gives up on
    it ~20 s later. What the frame held is fetched again over REST (a close missed is caught up)."""

    skipped_frames = 0

    def handle_text_or_binary_message(self, data: Any) -> Any:
        try:
            return super().handle_text_or_binary_message(data)  # type: ignore[misc]
        except Exception as exc:
            self.skipped_frames += 1
            if self.skipped_frames == 1:
                text = str(data)
                log.warning(
                    "skipped a websocket frame that could not be handled (%s: %s): %r; further "
                    "ones are counted, not logged", type(exc).__name__, exc,
                    text if len(text) <= 200 else text[:200] + "...",
                )  # fmt: skip
            return None


_SKIPPING: dict[type, type] = {}


def frame_skipping(client: Any) -> Any:
    """`client` (a ccxt websocket client) turned into its `_FrameSkipping` subclass, in place:
    ccxt makes its clients itself (`Exchange.client`), so the class is swapped after."""
    base = type(client)
    if not issubclass(base, _FrameSkipping):
        if base not in _SKIPPING:
            _SKIPPING[base] = type(f"FrameSkipping{base.__name__}", (_FrameSkipping, base), {})
        client.__class__ = _SKIPPING[base]
    return client


def make_ws_class() -> Any:
    """A ccxt.pro okx client that also hands raw pushes and refusals to sinks."""
    if ccxt_pro is None:  # pragma: no cover
        return None

    class OkxWithRawPushes(_LeanMarkets, _OkxAnswersOnly, ccxt_pro.okx):  # type: ignore[misc]
        candle_sink: Callable[[dict[str, Any]], None] | None = None
        funding_sink: Callable[[dict[str, Any]], None] | None = None
        refusal_sink: RefusalSink | None = None
        derived_sink: Callable[[dict[str, Any]], None] | None = None

        def client(self, url: str) -> Any:
            return frame_skipping(super().client(url))

        def handle_message(self, client: Any, message: Any) -> Any:
            if _is_candle_data(message):
                # ccxt's own routing would end here too (handle_ohlcv), after building two
                # dicts of ~30 bound methods per message: a tenth of the collector's CPU.
                return self.handle_ohlcv(client, message)
            refused = parse_refusal(message) if self.refusal_sink is not None else None
            if refused is not None and self.refusal_sink is not None:
                self.refusal_sink(refused[0], refused[1], str(message.get("msg", "")))
                return None
            channel = derived_channel(message)
            if channel is not None:
                if self.derived_sink is not None:
                    self.derived_sink(message)
                inst_id = str((message.get("arg") or {}).get("instId", ""))
                client.resolve(message, f"{channel}:{inst_id}")
                return None
            return super().handle_message(client, message)

        def handle_ohlcv(self, client: Any, message: dict[str, Any]) -> Any:
            if self.candle_sink is not None:
                self.candle_sink(message)
                if not awaited(client, self.markets_by_id, message):
                    return None
            return super().handle_ohlcv(client, message)

        def handle_funding_rate(self, client: Any, message: dict[str, Any]) -> Any:
            if self.funding_sink is not None:
                self.funding_sink(message)
            return super().handle_funding_rate(client, message)

    return OkxWithRawPushes
