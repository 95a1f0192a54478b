"""Per-connection websocket limits OKX enforces: 480 subscribe/unsubscribe requests an hour, and
the drop of a connection with no subscription, or with nothing pushed, for 30 s (pure, clocked by
the caller in real seconds).

OKX (docs "WebSocket" overview, OKX.md §4.1/§7): "If there is no subscription 30 s after a
connection is made, or no data pushed for 30 s after subscribing, the connection is closed";
clients are told to send text "ping" when nothing arrived for N < 30 s, which only makes sense
if a ping keeps a subscribed connection alive: here it does [UNVERIFIED]. A connection with no
subscription is closed whatever it sends.
"""

from __future__ import annotations

import math
from collections import deque

HOUR_S = 3600.0


class RequestWindow:
    """At most `per_hour` requests in any sliding hour (0 = unlimited); refused ones not counted.

    OKX counts request frames ("subscribe/unsubscribe/login requests"), not their args."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        if self.per_hour <= 0:
            return True
        while self._times and self._times[0] <= now - HOUR_S:
            self._times.popleft()
        if len(self._times) >= self.per_hour:
            return False
        self._times.append(now)
        return True


class IdleWatch:
    """When a connection becomes idle by OKX's rule (`idle_s` <= 0: never)."""

    def __init__(self, idle_s: float, now: float) -> None:
        self.idle_s = idle_s
        self._bare_since: float | None = now  # no subscription since then (None: has some)
        self._active = now  # last data push, or ping on a subscribed connection

    def subscriptions(self, count: int, now: float) -> None:
        """The number of subscriptions changed to `count`."""
        if count == 0 and self._bare_since is None:
            self._bare_since = now
        elif count > 0 and self._bare_since is not None:
            self._bare_since = None
            self._active = now  # the 30 s "after subscribing" start now

    def pushed(self, now: float) -> None:
        self._active = now

    def pinged(self, now: float) -> None:
        if self._bare_since is None:
            self._active = now

    def deadline(self) -> float:
        """The monotonic() time at which the connection is idle (inf: never)."""
        if self.idle_s <= 0:
            return math.inf
        start = self._bare_since if self._bare_since is not None else self._active
        return start + self.idle_s
