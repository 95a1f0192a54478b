"""Fault switches: make the simulator misbehave on purpose, while it runs.

Set them from Python (`sim.faults.rest_5xx_share = 0.5`) or over HTTP
(`POST /_sim/faults {"rest_5xx_share": 0.5}`). Each assignment is validated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SHARES = ("rest_5xx_share", "rest_429_share", "ws_malformed_share", "empty_field_share")
_DURATIONS = ("rest_latency_ms", "ws_latency_ms", "ws_drop_after_s", "settle_processing_s")
_MAX_CAP = 1_000_000


@dataclass
class Faults:
    """What the simulator does wrong. All off by default."""

    stop_pushing: bool = False  # WS stays open, acks and pongs still come, data pushes stop
    withhold_pong: bool = False  # text "ping" gets no "pong" (ccxt: RequestTimeout)
    refuse_ws: bool = False  # new WS handshakes get HTTP 503 (ccxt: NetworkError)
    reject_subscribe: bool = False  # every subscribe gets error 60012 (ccxt: BadRequest)
    rest_5xx_share: float = 0.0  # share of REST answers: HTTP 503 {"code":"50026"}
    rest_429_share: float = 0.0  # share of REST answers: HTTP 429 {"code":"50011"}
    ws_malformed_share: float = 0.0  # share of WS data pushes sent as truncated, invalid JSON
    rest_latency_ms: float = 0.0  # added before every REST answer
    ws_latency_ms: float = 0.0  # added to every outgoing WS frame (order kept)
    ws_drop_after_s: float = 0.0  # > 0: close every WS connection this long after it opened
    # Bad days (docs/simulator.md "Bad days"): OKX behaviours that are not wrong, only rare.
    cap_candles: int = 0  # > 0: /market/candles returns at most this many rows (OKX max: 300)
    cap_history_candles: int = 0  # likewise /market/history-candles (300; 100 until 2025)
    cap_funding_history: int = 0  # likewise /public/funding-rate-history (400; once 100)
    cap_price_candles: int = 0  # likewise /market/mark-price-candles and index-candles (100)
    cap_history_price_candles: int = 0  # likewise their history endpoints (100)
    cap_open_interest_history: int = 0  # likewise rubik open-interest-history (100)
    empty_field_share: float = 0.0  # share of candle rows with one volume field sent as ""
    settle_processing_s: float = 0.0  # exchange s after each funding time: settState processing

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, _checked(name, value))

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply several switches at once; nothing changes if any is invalid."""
        checked = {name: _checked(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def reset(self) -> None:
        """Turn every fault off."""
        self.update(dataclasses.asdict(Faults()))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _checked(name: str, value: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(Faults)}
    if name not in fields:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(fields)}")
    if fields[name].type in ("bool", bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if fields[name].type in ("int", int):
        # Page caps: whole row counts; 0 means "OKX's documented maximum".
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_CAP:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if name in _SHARES and not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    if name in _DURATIONS and not 0.0 <= number <= 3_600_000:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number
