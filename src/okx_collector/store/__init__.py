"""The Parquet dataset: layout, schemas, crash-safe writes and reads (DESIGN.md §4).

The only package that writes Parquet. Public API: `Store`, `RecoveryNote`, `InvalidRecords`,
`InvalidInstrumentId`, and the schemas.
"""

from okx_collector.store.layout import InvalidInstrumentId
from okx_collector.store.recovery import RecoveryNote
from okx_collector.store.schema import CANDLE_SCHEMA, FUNDING_LIVE_SCHEMA, FUNDING_SCHEMA
from okx_collector.store.store import Store
from okx_collector.store.validate import InvalidRecords

__all__ = [
    "CANDLE_SCHEMA",
    "FUNDING_LIVE_SCHEMA",
    "FUNDING_SCHEMA",
    "InvalidInstrumentId",
    "InvalidRecords",
    "RecoveryNote",
    "Store",
]
