"""The instrument record, and configured symbols resolved against OKX's instrument list (pure)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from okx_collector.errors import BadInput


@dataclass(frozen=True, slots=True)
class Instrument:
    """One OKX instrument as the collector needs it."""

    symbol: str  # ccxt unified symbol, e.g. "BTC/USDT:USDT"
    inst_id: str  # OKX instId, e.g. "BTC-USDT-SWAP"; also the store's directory name
    is_spot: bool
    quote: str = ""  # quote currency (spot) or settle currency (perpetual), e.g. "USDT"
    list_time: int | None = None  # OKX `listTime`, ms: no candle is older
    live: bool = True  # OKX `state` is "live" (not "preopen" or "suspend")

    @property
    def is_perpetual(self) -> bool:
        return not self.is_spot


def instrument_from_market(market: dict[str, Any]) -> Instrument:
    spot = bool(market.get("spot"))
    info = market.get("info") or {}
    list_time = str(info.get("listTime") or "")
    return Instrument(
        market["symbol"],
        market["id"],
        spot,
        quote=str(market.get("quote") if spot else market.get("settle") or ""),
        list_time=int(list_time) if list_time.isdigit() and int(list_time) > 0 else None,
        live=str(info.get("state") or "live") == "live",
    )


def guess_inst_id(text: str) -> str:
    """OKX's instId for a symbol OKX no longer lists: `DOT/USDT` -> `DOT-USDT`,
    `DOT/USDT:USDT` -> `DOT-USDT-SWAP`, an instId as it is."""
    text = text.strip().upper()
    if "/" not in text:
        return text
    pair, _, settle = text.partition(":")
    return pair.replace("/", "-") + ("-SWAP" if settle else "")


@dataclass(frozen=True)
class Resolution:
    """Configured symbols, resolved: the listed instruments, and the delisted instIds."""

    instruments: list[Instrument]
    gone: list[str]


def resolve(
    symbols: Sequence[str],
    listed: Mapping[str, Instrument],
    stored: Collection[str] = (),
    *,
    allow_none: bool = False,
) -> Resolution:
    """Map user symbols (`BTC/USDT`, `BTC/USDT:USDT` or OKX `BTC-USDT-SWAP`) to instruments.

    A symbol OKX no longer lists but whose instId has data in the store (`stored`) was
    delisted: it is reported in `gone`, not an error. Every other unknown symbol is bad input,
    all of them in one message, each with the closest listed names. No listed symbol at all is
    bad input too, unless `allow_none` (selectors supply the rest).
    """
    by_symbol = {inst.symbol: inst for inst in listed.values()}
    resolved: list[Instrument] = []
    gone: list[str] = []
    unknown: list[str] = []
    for raw in symbols:
        text = raw.strip().upper()
        inst = by_symbol.get(text) or listed.get(text)
        if inst is not None:
            if inst not in resolved:
                resolved.append(inst)
        elif guess_inst_id(text) in stored:
            gone.append(guess_inst_id(text))
        else:
            unknown.append(raw)
    if unknown:
        raise BadInput(_unknown_message(unknown, list(by_symbol)))
    if not resolved and gone and not allow_none:
        raise BadInput(
            f"OKX lists none of the configured symbols any more ({', '.join(gone)} were "
            "delisted; their data stays in the store); configure listed symbols"
        )
    return Resolution(resolved, gone)


def _unknown_message(unknown: Sequence[str], names: list[str]) -> str:
    # Every one is named, so that one edit of the list fixes them all; suggestions for the
    # first few only (a long list of typos is rarer than a list from another exchange).
    parts = []
    for index, raw in enumerate(unknown):
        close = (
            difflib.get_close_matches(raw.strip().upper(), names, n=3, cutoff=0.6)
            if index < 5
            else []
        )
        parts.append(f"{raw!r} (did you mean {', '.join(close)}?)" if close else repr(raw))
    noun = "symbol" if len(unknown) == 1 else f"{len(unknown)} symbols"
    return (
        f"unknown {noun}: {', '.join(parts)}: OKX lists no such spot or swap market "
        "(use ccxt symbols such as BTC/USDT or BTC/USDT:USDT, or a selector such as spot:USDT)"
    )
