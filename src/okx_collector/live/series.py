"""Per-series live state and the pure rules that drive it (stale, due, fallback)."""

from __future__ import annotations

from dataclasses import dataclass

from okx_collector.instruments import Instrument
from okx_collector.timeframes import Timeframe

STALE_FLOOR_MS = 30_000  # OKX pushes at least every few seconds; 30 s of silence is a dead stream
RETRY_HOLD_CAP_SECONDS = 60.0
OVERDUE_SECONDS = 2.0  # local time a closed candle may lag before the stream counts as lossy


def poll_round_due(local: float, last_poll: float, interval: float) -> bool:
    """A REST poll round (series served by polling, funding without pushes) is due `interval`
    local seconds after the previous one."""
    return local - last_poll >= interval


def catch_up_wanted(
    *,
    busy: bool,
    held: bool,
    flagged: bool,
    missing: bool,
    polling: bool,
    poll_due: bool,
    awaited: float,
) -> bool:
    """Whether a series starts a REST catch-up now.

    `busy`: one is in flight; `held`: a hold after a failure runs; `flagged`: something asked
    for one (a gap in the pushes, a reconnect, a refusal, a full queue); `missing`: a candle has
    closed (exchange time) that the store lacks; `polling`: served by REST polling, which
    fetches once per poll round (`poll_due`); otherwise the stream normally brings the closed
    candle at its close, and only one awaited for `awaited` >= OVERDUE_SECONDS is fetched.
    """
    if busy or held:
        return False
    if flagged:
        return True
    if not missing:
        return False
    if polling:
        return poll_due
    return awaited >= OVERDUE_SECONDS


def retry_hold_seconds(failures: int) -> float:
    """How long a series waits before its next REST catch-up after `failures` failures in a row:
    none after the first (a passing error), then 1, 2, 4 ... capped at a minute."""
    if failures <= 0:
        return 0.0
    return min(RETRY_HOLD_CAP_SECONDS, 2.0 ** (failures - 1))


def stale_after_ms(tf: Timeframe) -> int:
    """A stream is stale after max(half a candle, 30 s) without a push (freqtrade's rule)."""
    return max(tf.ms // 2, STALE_FLOOR_MS)


@dataclass
class SeriesState:
    """What the collector knows about one (instrument, timeframe) series."""

    inst: Instrument
    tf: Timeframe
    last_closed: int | None  # open time of the newest candle known to be stored
    streamable: bool  # websockets can carry it (timeframes up to 4h)
    last_push: int | None = None  # exchange time of the last websocket push
    polling: bool = False  # currently served by REST polling (auto fallback or poll mode)
    catching_up: bool = False  # a REST catch-up is in flight
    caught_up: bool = False  # the first catch-up after start has completed
    start: int | None = None  # where an empty series starts, if not the run's --since (a listing)
    refused_until: float = 0.0  # monotonic time before which it is not subscribed (refused)
    hold_until: float = 0.0  # monotonic time before which no REST catch-up starts
    failures: int = 0  # REST catch-ups failed in a row

    @property
    def key(self) -> str:
        return f"{self.inst.inst_id} {self.tf.name}"

    @property
    def ident(self) -> tuple[str, str]:
        """(instId, timeframe name): the collector's key for the series."""
        return (self.inst.inst_id, self.tf.name)

    def next_due(self, since: int) -> int:
        """Open time of the first candle still missing from the store."""
        if self.last_closed is not None:
            return self.last_closed + self.tf.ms
        return since if self.start is None else self.start

    def missing_closed(self, now: int, since: int) -> bool:
        """True when a candle has closed (by exchange time) that the store lacks."""
        return self.tf.is_closed(self.next_due(since), now)

    def is_stale(self, now: int, started: int) -> bool:
        """No websocket push for longer than the stale limit (counted from start if none yet)."""
        reference = self.last_push if self.last_push is not None else started
        return now - reference > stale_after_ms(self.tf)

    def stored(self, ts: int) -> None:
        if self.last_closed is None or ts > self.last_closed:
            self.last_closed = ts
