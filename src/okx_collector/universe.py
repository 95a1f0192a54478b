"""Universe selectors: `--symbols` entries that name a set of instruments instead of one (pure).

Grammar (case-insensitive), one entry of the comma list:

    KIND:CCY[:topN]
      KIND   spot | swap     spot pairs quoted in CCY, or perpetuals settled in CCY
      CCY    USDT, USDC, BTC, ...
      topN   only the N with the largest 24 h volume in quote currency (OKX's tickers)

    spot:USDT          every live USDT spot pair
    swap:USDT:top50    the 50 USDT-settled perpetuals with the most 24 h volume

Selectors and plain symbols mix (`BTC/USDT,swap:USDT:top20`). They are resolved against OKX's
live instrument list at start and again whenever the list is reloaded while collecting: new
listings join, delisted instruments leave. A top-N selector is ranked at start; while running it
only gains instruments that enter the top N (none is dropped for falling out of it, which would
leave a series ending for no reason in the data); a restart ranks afresh.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from okx_collector.errors import BadInput
from okx_collector.instruments import Instrument

_SELECTOR = re.compile(r"^(SPOT|SWAP):([A-Z0-9]{2,15})(?::TOP(\d{1,4}))?$")
_KINDS = ("SPOT:", "SWAP:")
GRAMMAR = "spot:CCY, swap:CCY, or either with :topN (e.g. spot:USDT, swap:USDT:top50)"


@dataclass(frozen=True, slots=True)
class Selector:
    """One selector: every live instrument of a kind in a currency, optionally the top N."""

    kind: Literal["spot", "swap"]
    currency: str
    top: int | None

    def __str__(self) -> str:
        return f"{self.kind}:{self.currency}" + (f":top{self.top}" if self.top else "")

    def matches(self, inst: Instrument) -> bool:
        return inst.live and inst.is_spot == (self.kind == "spot") and inst.quote == self.currency


def is_selector(entry: str) -> bool:
    return entry.strip().upper().startswith(_KINDS)


def parse_selector(entry: str) -> Selector:
    """`entry` as a selector; BadInput (exit 2) saying the grammar when it is malformed."""
    found = _SELECTOR.match(entry.strip().upper())
    if found is None or found.group(3) == "0" or (found.group(3) or "").startswith("0"):
        raise BadInput(f"bad selector {entry!r} in --symbols: use {GRAMMAR}")
    kind: Literal["spot", "swap"] = "spot" if found.group(1) == "SPOT" else "swap"
    top = int(found.group(3)) if found.group(3) else None
    return Selector(kind, found.group(2), top)


def split_entries(entries: Iterable[str]) -> tuple[list[str], list[Selector]]:
    """--symbols entries: (plain symbols, selectors)."""
    plain: list[str] = []
    selectors: list[Selector] = []
    for entry in entries:
        if is_selector(entry):
            selectors.append(parse_selector(entry))
        else:
            plain.append(entry)
    return plain, selectors


def select(
    selectors: Sequence[Selector],
    listed: Mapping[str, Instrument],
    volumes: Mapping[str, float],
) -> list[Instrument]:
    """The instruments the selectors name, in instId order; `volumes`: instId -> 24 h quote
    volume (only read for top-N selectors; an instrument without one ranks last)."""
    chosen: dict[str, Instrument] = {}
    for selector in selectors:
        matching = [inst for inst in listed.values() if selector.matches(inst)]
        if selector.top is not None:
            matching.sort(key=lambda inst: (-volumes.get(inst.inst_id, -1.0), inst.inst_id))
            matching = matching[: selector.top]
        for inst in matching:
            chosen[inst.inst_id] = inst
    return [chosen[k] for k in sorted(chosen)]


def needs_volumes(selectors: Sequence[Selector]) -> list[str]:
    """The OKX instTypes whose tickers a top-N ranking needs."""
    kinds = {s.kind for s in selectors if s.top is not None}
    return [k.upper() for k in ("spot", "swap") if k in kinds]
