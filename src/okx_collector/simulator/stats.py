"""Counters of what the simulator served (`sim.stats`, `GET /_sim/stats`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Running totals since the simulator started."""

    rest_requests: int = 0  # every /api/v5 request, answered or not
    rest_by_route: dict[str, int] = field(default_factory=dict)  # e.g. "market/candles" -> 12
    # Requests being answered now, and the most at once since the last `reset_peaks()`: whether
    # a client overlaps its requests, per route and in all (a count, not a timing).
    rest_in_flight: dict[str, int] = field(default_factory=dict)
    rest_peak_by_route: dict[str, int] = field(default_factory=dict)
    rest_peak: int = 0
    rate_limited: int = 0  # refused by OKX's rate limits (HTTP 429, code 50011)
    injected_5xx: int = 0  # answered 503/50026 by the rest_5xx_share fault
    injected_429: int = 0  # answered 429/50011 by the rest_429_share fault
    rest_errors: int = 0  # OKX error answers: unknown instId, bad parameter
    ws_connections: int = 0  # WS connections accepted in total
    ws_open: int = 0  # WS connections open now
    ws_refused: int = 0  # handshakes refused by the refuse_ws fault
    ws_dropped: int = 0  # connections closed by the simulator (drops, faults, idle, maintenance)
    ws_idle_dropped: int = 0  # of which closed by OKX's idle rule (idle_drop_s)
    ws_subscriptions: int = 0  # subscriptions active now
    ws_pushes: int = 0  # data frames sent (candle and funding-rate pushes)
    ws_malformed: int = 0  # data frames sent broken by the ws_malformed_share fault
    ws_pings: int = 0  # text pings received
    ws_errors: int = 0  # error frames sent (60012, 60014, 60018)

    def count_route(self, route: str) -> None:
        self.rest_requests += 1
        self.rest_by_route[route] = self.rest_by_route.get(route, 0) + 1

    def begin(self, route: str) -> None:
        """A request to `route` is being answered (until `end(route)`)."""
        now = self.rest_in_flight[route] = self.rest_in_flight.get(route, 0) + 1
        self.rest_peak_by_route[route] = max(self.rest_peak_by_route.get(route, 0), now)
        self.rest_peak = max(self.rest_peak, sum(self.rest_in_flight.values()))

    def end(self, route: str) -> None:
        self.rest_in_flight[route] -= 1

    def reset_peaks(self) -> None:
        """Peaks count from now (those of requests in flight now included)."""
        self.rest_peak_by_route = {r: n for r, n in self.rest_in_flight.items() if n}
        self.rest_peak = sum(self.rest_in_flight.values())

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
