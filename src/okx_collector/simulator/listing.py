"""Instruments listed while the simulator runs (`Simulator.list_instrument`), pure.

A new name gets synthetic but plausible parameters drawn from (seed, base currency): so a spot
pair and its perpetual listed later share one price level and one path, as the default pairs do,
and one seed always lists the same market.
"""

from __future__ import annotations

import math
import re

from okx_collector.simulator.bars import HOUR_MS
from okx_collector.simulator.instruments import Instrument, fmt_units
from okx_collector.simulator.noise import derive_salt

# OKX ids: BASE-QUOTE (spot) and BASE-QUOTE-SWAP (perpetual); the simulator only has USDT pairs
# for the default instruments, but any quote works the same way.
_ID = re.compile(r"^([A-Z0-9]{1,20})-([A-Z0-9]{2,10})(-SWAP)?$")
_SWAP_VOLUME_FACTOR = 2.5  # as the default pairs: perpetuals trade more than spot
NEW_FUNDING_INTERVAL_MS = 8 * HOUR_MS  # OKX's usual interval for a new perpetual [UNVERIFIED]


def new_instrument(seed: int, inst_id: str, list_time: int) -> Instrument:
    """The instrument `inst_id` listed at `list_time`; ValueError if the id is not OKX-shaped."""
    match = _ID.match(inst_id)
    if match is None:
        raise ValueError(
            f"cannot list {inst_id!r}: expected BASE-QUOTE (spot) or BASE-QUOTE-SWAP (perpetual)"
        )
    base, quote, swap = match.group(1), match.group(2), match.group(3) is not None
    u = derive_salt(seed, "listing", base) / 2**64
    price = 10 ** (-2 + 5 * u)  # 0.01 .. 1000 quote
    mag = math.floor(math.log10(price))
    tick = fmt_units(1, 4 - mag)  # ~4-5 significant digits, as OKX's ticks give
    per_min = 3_000.0 / price  # ~3,000 quote a minute: a small new listing
    if not swap:
        return Instrument(
            inst_id, "SPOT", base, quote, tick, "0.0001", "0.1", "", price, 1.2, per_min,
            list_time=list_time,
        )  # fmt: skip
    return Instrument(
        inst_id,
        "SWAP",
        base,
        quote,
        tick,
        "1",
        "1",
        fmt_units(1, mag),  # contracts worth 1-10 quote
        price,
        1.2,  # new listings are volatile
        per_min * _SWAP_VOLUME_FACTOR,
        NEW_FUNDING_INTERVAL_MS,
        "0.015",
        lever="20",
        list_time=list_time,
    )
