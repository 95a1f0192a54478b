"""qlib fields of mark-price candles, index candles and open interest, per exported instrument.

    $mark_open $mark_high $mark_low $mark_close      the perpetual's mark-price candle
    $index_open $index_high $index_low $index_close  the candle of the index behind it
    $open_interest                                   open interest in contracts at the bar's close

A group of fields is written for every instrument of the timeframe once the store holds any
series of its kind at that timeframe (NaN where nothing is stored for the instrument, so that a
qlib expression over many instruments never misses a field). A spot pair takes its linear
perpetual's mark and open interest (`BTC-USDT` -> `BTC-USDT-SWAP`, as it takes its funding) and
its own index (`BTC-USDT`); a perpetual its own mark and open interest and its family's index.

The slot of the bar opening at `t` holds the mark/index candle opening at `t`, and the open
interest at `t + step` (its close, as `$close` is the last trade before it).

This module says what the fields hold; `derived_writer` writes them (in full, or appended to).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from okx_collector.qlib_export.listing import files_sig
from okx_collector.qlib_export.sources import FileSig, Sig
from okx_collector.store.arrow import to_float64, to_int64
from okx_collector.store.journal import JournalVanished
from okx_collector.store.layout import list_partitions, overlapping
from okx_collector.store.schema import INDEX_CANDLES, MARK_CANDLES, OPEN_INTEREST, Kind
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe

_PRICES = ("open", "high", "low", "close")
# group -> (kind, (field, stored column) ...)
GROUPS: dict[str, tuple[Kind, tuple[tuple[str, str], ...]]] = {
    "mark": (MARK_CANDLES, tuple((f"mark_{c}", c) for c in _PRICES)),
    "index": (INDEX_CANDLES, tuple((f"index_{c}", c) for c in _PRICES)),
    "oi": (OPEN_INTEREST, (("open_interest", "oi_contracts"),)),
}
DERIVED_FIELDS = tuple(f for _, fields in GROUPS.values() for f, _ in fields)


def stored_ids(store: Store, tf: Timeframe) -> dict[str, set[str]]:
    """group -> the ids with a series of that kind at `tf` (groups with none left out)."""
    out = {}
    for group, (kind, _) in GROUPS.items():
        ids = {i for i, name in store.list_kind_series(kind) if name == tf.name}
        if ids:
            out[group] = ids
    return out


def source_id(group: str, inst_id: str) -> str | None:
    """The series of `group` that applies to `inst_id` (None: futures, options)."""
    parts = inst_id.split("-")
    if len(parts) == 2:  # a spot pair
        return inst_id if group == "index" else f"{inst_id}-SWAP"
    if len(parts) == 3 and parts[2] == "SWAP":
        return inst_id.removesuffix("-SWAP") if group == "index" else inst_id
    return None


def shift(group: str, tf: Timeframe) -> int:
    """Stored time minus slot time: open interest is stored at the bar's close."""
    return tf.ms if GROUPS[group][0] is OPEN_INTEREST else 0


def values(
    store: Store, tf: Timeframe, group: str, sid: str | None, lo: int, hi: int
) -> dict[str, npt.NDArray[np.float32]]:
    """field -> one float32 value per slot of [lo, hi) (bar open times; NaN where nothing is
    stored, everywhere if `sid` is None)."""
    step = tf.ms
    kind, fields = GROUPS[group]
    bars = (hi - lo) // step
    out = {f: np.full(bars, np.nan, dtype=np.float32) for f, _ in fields}
    if sid is None or bars <= 0:
        return out
    s = shift(group, tf)
    columns = ["ts", *(c for _, c in fields)]
    table = store.read_kind(kind, sid, tf, lo + s, hi + s, columns=columns)
    slots = (to_int64(table.column("ts")) - s - lo) // step
    for f, column in fields:
        out[f][slots] = to_float64(table.column(column)).astype(np.float32)
    return out


class KindListing:
    """The files of one derived series at one moment (as `listing.Listing` for candles): their
    identity tells an update which stored ranges are unchanged since the last export."""

    def __init__(self, store: Store, kind: Kind, sid: str, tf: Timeframe, journal: bool) -> None:
        self._store = store
        self._kind = kind
        self._key = (sid, tf.name)
        self._series = store.kind_series(kind, sid, tf)
        self._journal = journal  # may the journal hold rows? (`store.journal_pending()`)
        self._parts = list_partitions(self._series.directory, self._series.period)
        self._stats: dict[str, FileSig | None] = {}
        self._spans: list[tuple[str, int, int]] | None = None  # journal files: name, ts range

    def _journal_spans(self) -> list[tuple[str, int, int]]:
        """The journal files holding rows of the series, each with the range of its rows' times:
        found once per listing (asking the store per range scans every journal file again)."""
        if self._spans is None:
            reader = self._store._union._journal
            self._spans = []
            for path in reader.files(self._kind.name):
                try:
                    parts = reader.series_rows(self._kind, self._key, [path], None, None)
                except JournalVanished:
                    continue  # (merged meanwhile: the partitions' identity changed with it)
                ts = [to_int64(t.column(self._kind.key)) for t in parts]
                if ts and any(a.size for a in ts):
                    lo = min(int(a.min()) for a in ts if a.size)
                    hi = max(int(a.max()) for a in ts if a.size)
                    self._spans.append((str(path), lo, hi))
        return self._spans

    def sig(self, start: int, end: int) -> Sig | None:
        """The identity of the files holding stored times [start, end), None if one is gone."""
        names = [str(self._series.path(p)) for p in overlapping(self._parts, start, end)]
        if self._journal:
            # (The journal's files never change: their names identify their content.)
            names += [n for n, lo, hi in self._journal_spans() if lo < end and hi >= start]
        return files_sig(names, self._stats)
