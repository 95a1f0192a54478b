"""The simulator's clock: simulated exchange time running `speed` times faster than real time."""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """now = start + elapsed real time * speed (both in ms of simulated time)."""

    def __init__(
        self,
        start_ms: int | None = None,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self.speed = float(speed)  # simulated seconds per real second
        self._monotonic = monotonic
        self._origin = monotonic()  # real time at start_ms

    def now_ms(self) -> int:
        """Simulated time, int ms since the epoch."""
        return self.start_ms + int((self._monotonic() - self._origin) * self.speed * 1000)

    def real_at(self, sim_ms: int) -> float:
        """The monotonic() reading at which simulated time reaches `sim_ms`."""
        return self._origin + (sim_ms - self.start_ms) / (self.speed * 1000)
