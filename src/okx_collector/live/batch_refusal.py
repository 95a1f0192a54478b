"""A stream batch whose subscription OKX refused without naming an instrument (candles and
funding alike): ccxt then rejects every watch of the connection, so the whole batch waits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from okx_collector.errors import ExchangeRejected
from okx_collector.localclock import LocalClock

log = logging.getLogger("okx_collector.collect")

# A refusal that names no instrument is rarely over at once (a limit, a suspension): asking
# sooner would only be refused again, and REST serves the batch meanwhile.
REFUSED_BATCH_PAUSE_S = 30.0

T = TypeVar("T")


async def pause_refused_batch(
    exc: ExchangeRejected,
    batch: Sequence[T],
    *,
    forget: Callable[[Sequence[T]], None],
    waits: Iterator[float],
    local: LocalClock,
    kind: str,
    unit: str,
    served: str,
) -> None:
    """Forget the batch's subscriptions (ccxt keeps them marked as sent: the next watch would not
    send them again), warn, and wait the next of `waits` but at least REFUSED_BATCH_PAUSE_S.

    The warning names the `kind` of subscription, the batch's size in `unit`, and how its data
    is `served` meanwhile."""
    pause = max(next(waits), REFUSED_BATCH_PAUSE_S)
    log.warning(
        "OKX refused a %s subscription of a batch of %d %s (%s); %s, subscribing again in %.0fs",
        kind, len(batch), unit, exc, served, pause,
    )  # fmt: skip
    forget(batch)
    await local.sleep(pause)
