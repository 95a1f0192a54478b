"""What the store holds, and the part of it `--symbols`/`--timeframes` name (read-only, offline).

`status` and `export-qlib` read the store, not the exchange: without the flags they show every
stored series; with them, only the named ones. Symbols map to instIds as OKX spells them
(`BTC/USDT` -> `BTC-USDT`, `BTC/USDT:USDT` -> `BTC-USDT-SWAP`); a spot symbol also names its
perpetual's funding, which the collector stores for it. Selectors match stored instIds by kind
and currency; a top-N selector needs OKX's 24 h volumes and is refused here.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from okx_collector.config import Settings
from okx_collector.errors import BadInput
from okx_collector.instruments import guess_inst_id
from okx_collector.store import Store
from okx_collector.universe import Selector, split_entries

SWAP = "-SWAP"
log = logging.getLogger("okx_collector.collect")


@dataclass(frozen=True)
class Holdings:
    """The series a store holds: candles by (instId, timeframe) and settled funding by instId."""

    candles: tuple[tuple[str, str], ...]
    funding: tuple[str, ...]

    @classmethod
    def of(cls, store: Store) -> Holdings:
        return cls(tuple(store.list_candle_series()), tuple(store.list_funding_series()))

    @property
    def inst_ids(self) -> list[str]:
        return sorted({i for i, _ in self.candles} | set(self.funding))

    @property
    def timeframes(self) -> list[str]:
        return sorted({tf for _, tf in self.candles})


def _selects(selector: Selector, inst_id: str) -> bool:
    parts = inst_id.split("-")
    if selector.kind == "swap":
        return len(parts) == 3 and parts[2] == "SWAP" and parts[1] == selector.currency
    return len(parts) == 2 and parts[1] == selector.currency


@dataclass(frozen=True)
class SeriesFilter:
    """Which stored series a command reads; None: no restriction."""

    inst_ids: frozenset[str] | None = None
    timeframes: frozenset[str] | None = None

    def __call__(self, inst_id: str, timeframe: str | None) -> bool:
        """`timeframe` None: the instrument's settled funding (not narrowed by timeframes)."""
        if (
            timeframe is not None
            and self.timeframes is not None
            and timeframe not in self.timeframes
        ):
            return False
        if self.inst_ids is None:
            return True
        if inst_id in self.inst_ids:
            return True
        # A spot pair's funding is its perpetual's: `--symbols BTC/USDT` shows BTC-USDT-SWAP's.
        return (
            timeframe is None and inst_id.endswith(SWAP) and inst_id[: -len(SWAP)] in self.inst_ids
        )


def series_filter(settings: Settings, held: Holdings) -> SeriesFilter:
    """The stored series `settings` name; BadInput naming every symbol or timeframe with no data."""
    inst_ids = None
    if "symbols" in settings.given:
        inst_ids = frozenset(_named_inst_ids(settings.symbols, held))
    timeframes = None
    if "timeframes" in settings.given:
        names = [tf.name for tf in settings.timeframes]
        missing = [n for n in names if n not in held.timeframes]
        if missing:
            raise BadInput(
                f"the store at {settings.data_dir} has no {', '.join(missing)} candles "
                f"(it holds: {', '.join(held.timeframes) or 'none'})"
            )
        timeframes = frozenset(names)
    return SeriesFilter(inst_ids, timeframes)


def _named_inst_ids(symbols: Sequence[str], held: Holdings) -> list[str]:
    plain, selectors = split_entries(symbols)
    ranked = [str(s) for s in selectors if s.top is not None]
    if ranked:
        raise BadInput(
            f"{', '.join(ranked)}: a top-N selector needs OKX's volumes; name the symbols, or "
            "use spot:CCY / swap:CCY, which match what the store holds"
        )
    stored = held.inst_ids
    chosen: list[str] = []
    unknown: list[str] = []
    for symbol in plain:
        inst_id = guess_inst_id(symbol)
        if inst_id in stored or inst_id + SWAP in held.funding:
            chosen.append(inst_id)
        else:
            unknown.append(symbol)
    for selector in selectors:
        matched = [i for i in stored if _selects(selector, i)]
        if not matched:
            unknown.append(str(selector))
        chosen += matched
    if unknown:
        raise BadInput(f"nothing stored for {_named(unknown, stored)}")
    return chosen


def _named(unknown: Sequence[str], stored: list[str]) -> str:
    """All of them in one line: the first few with the closest stored names, then a count."""
    parts = []
    for symbol in unknown[:5]:
        close = difflib.get_close_matches(guess_inst_id(symbol), stored, n=2, cutoff=0.8)
        parts.append(f"{symbol} (stored: {', '.join(close)}?)" if close else symbol)
    parts += list(unknown[5:20])
    more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
    return f"{len(unknown)} symbol(s): {', '.join(parts)}{more}"


def unfollowed_timeframes(settings: Settings, held: Holdings) -> list[str]:
    """Stored timeframes `collect` will not follow because --timeframes was left at its default."""
    if "timeframes" in settings.given:
        return []  # chosen on purpose
    followed = {tf.name for tf in settings.timeframes}
    return [tf for tf in held.timeframes if tf not in followed]


def warn_unfollowed(settings: Settings) -> None:
    """One WARNING when `collect` runs on its default timeframes and the store holds others:
    they would silently go stale (we say so rather than guess what the user wants collected)."""
    if not settings.data_dir.is_dir():
        return
    others = unfollowed_timeframes(settings, Holdings.of(Store(settings.data_dir)))
    if others:
        followed = ",".join(tf.name for tf in settings.timeframes)
        log.warning(
            "the store also holds %s candles, which collect does not follow without "
            "--timeframes (default %s): pass --timeframes %s to keep them fresh",
            ", ".join(others), followed, ",".join([*others, followed]),
        )  # fmt: skip
