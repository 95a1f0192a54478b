"""okx-collector: complete, exact, crash-safe OKX candle and funding datasets for research.

The public read API (see the README, "Reading the data"):

    from okx_collector import read_candles, read_funding
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from okx_collector.read_api import (
        SeriesNotStored,
        read_candles,
        read_funding,
        read_open_interest,
    )

__all__ = ["SeriesNotStored", "__version__", "read_candles", "read_funding", "read_open_interest"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The read API pulls in pandas and pyarrow; importing them lazily keeps every command's
    # start (and `okx-collector --help`) free of their import time.
    if name in ("SeriesNotStored", "read_candles", "read_funding", "read_open_interest"):
        from okx_collector import read_api

        return getattr(read_api, name)
    raise AttributeError(f"module 'okx_collector' has no attribute {name!r}")
