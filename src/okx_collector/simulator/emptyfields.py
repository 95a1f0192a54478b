"""The `empty_field_share` fault: candle rows with one volume field sent as "" (pure).

OKX sends "" for an absent number in funding rows (OKX.md §1.4, §7); whether a candle row ever
carries one is [UNVERIFIED], so this is a what-if for clients, off by default. Which rows and
which field are a hash of (seed, instId, bar, open time): one candle is blanked the same way in
every REST answer and every websocket push, whatever the order of requests.
"""

from __future__ import annotations

from okx_collector.simulator.noise import derive_salt

# vol, volCcy, volCcyQuote: the fields a missing trade count would leave unknown
_FIELDS = (5, 6, 7)
_TWO64 = float(2**64)


def blank_field(row: list[str], seed: int, inst_id: str, bar: str, share: float) -> list[str]:
    """`row` (OKX's 9 candle strings), or a copy with one volume field "" for `share` of
    candles."""
    if share <= 0:
        return row
    h = derive_salt(seed, "empty-field", inst_id, bar, row[0])
    if h / _TWO64 >= share:
        return row
    blanked = list(row)
    blanked[_FIELDS[(h >> 7) % len(_FIELDS)]] = ""
    return blanked
