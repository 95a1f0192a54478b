"""What `DerivedLive`'s mixins (`OpenInterestCloses`, `PricePolling`) use of it, declared once."""

from __future__ import annotations

from okx_collector.errors import InstrumentGone
from okx_collector.exchange_derived import OkxDerived
from okx_collector.live.derived_parts import Refusals
from okx_collector.live.writer import Writer


class DerivedParts:
    """The attributes and methods of `DerivedLive` its mixins share."""

    derived: OkxDerived
    writer: Writer
    mode: str
    gone: set[str]
    refused: Refusals

    def _count(self, what: str, rows: int, source: str) -> None:
        raise NotImplementedError

    def _gone(self, exc: InstrumentGone) -> None:
        raise NotImplementedError
