"""Where each series lives on disk: validated path components and time partitions.

    DATA_DIR/candles/{instId}/{timeframe}/{YYYY-MM}.parquet      every timeframe
    DATA_DIR/candles/{instId}/{timeframe}/{YYYY-MM-DD}.parquet   its newest month's last days
    DATA_DIR/funding/{instId}/{YYYY}.parquet
    DATA_DIR/funding_live/{instId}/{YYYY-MM-DD}.parquet

Only validated OKX instrument ids and known timeframe names become path components, so nothing a
user types reaches the filesystem unchecked.

Partitions are UTC calendar spans sized for readers: writes go to the journal first
(`store.journal`) and compaction merges them in the background, so the size of a partition is no
longer on the write path. Months for every candle timeframe (at most 44,640 rows of 1m, ~2 MB):
a year of 1m is 12 files, read in a few tens of ms, where 365 day files cost ~10x as much in
opens and footers (benchmarks/README.md, "Partition size"). The newest month of a series is written
to day files, listed after its month file (`SeriesIO.merge_in`): a compaction round rewrites a day
file per series, not the month's; its finished days are folded into the month file once 7 wait,
and a past month's all at once. Years for settled
funding (3 rows a day); days for live funding (one row per push).

Older versions kept 1m/3m/5m candles in day files (`2026-11-21.parquet`) and a live day in hour
files (`2026-11-21T13.parquet`). A month series lists them too (`list_partitions`), before or after
its month file by span, and reads dedupe the overlap; the start of a writing command folds them
into month files (`store.migrate`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from okx_collector.errors import BadInput
from okx_collector.timeframes import VALID_TIMEFRAMES, Timeframe

# OKX instIds: BTC-USDT, BTC-USDT-SWAP, BTC-USD-250328, BTC-USD-250328-100000-C.
INST_ID_RE = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+){1,3}$")
_DAY_FILE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.parquet$")
_HOUR_FILE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})\.parquet$")
_MONTH_FILE_RE = re.compile(r"^(\d{4})-(\d{2})\.parquet$")
_YEAR_FILE_RE = re.compile(r"^(\d{4})\.parquet$")
PARQUET_SUFFIX = ".parquet"


class InvalidInstrumentId(BadInput, ValueError):
    """A string that is not an OKX instrument id (and so may not become a path component)."""

    def __init__(self, inst_id: str) -> None:
        self.inst_id = inst_id
        super().__init__(
            f"invalid OKX instrument id {inst_id!r}: expected upper-case parts joined by '-', "
            "such as BTC-USDT or BTC-USDT-SWAP"
        )


def validate_inst_id(inst_id: str) -> str:
    """Return `inst_id` if it is a well-formed OKX instId, else raise `InvalidInstrumentId`."""
    if not isinstance(inst_id, str) or not INST_ID_RE.fullmatch(inst_id):
        raise InvalidInstrumentId(str(inst_id))
    return inst_id


def validate_timeframe(tf: Timeframe) -> Timeframe:
    """Return `tf` if it is one of the supported timeframes (not a hand-built lookalike)."""
    known = Timeframe.parse(tf.name)
    if known != tf:
        raise ValueError(f"timeframe {tf!r} does not match the known {known!r}")
    return known


class Period(Enum):
    """The calendar span of one partition file."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"


def candle_period(tf: Timeframe) -> Period:
    """The partition span of a candle series: a month for every timeframe (see above)."""
    del tf  # (one span for all: kept as a function so a kind or timeframe could differ)
    return Period.MONTH


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts / 1000, tz=UTC)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One partition: a calendar day, month or year, named `YYYY-MM-DD`, `YYYY-MM` or `YYYY`."""

    start: int  # first ms inside, UTC
    end: int  # first ms after
    key: str  # file stem

    @property
    def filename(self) -> str:
        return self.key + PARQUET_SUFFIX


DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def partition_of(ts: int, period: Period) -> Partition:
    """The partition holding timestamp `ts`."""
    return _partition_of_day(ts // DAY_MS, period)


@functools.lru_cache(maxsize=4096)
def _partition_of_day(day: int, period: Period) -> Partition:
    """The partition holding UTC day number `day` (a live job asks for the same few all day)."""
    dt = _utc(day * DAY_MS)
    if period is Period.YEAR:
        return year_partition(dt.year)
    if period is Period.DAY:
        return day_partition(dt.year, dt.month, dt.day)
    return month_partition(dt.year, dt.month)


def day_partition(year: int, month: int, day: int) -> Partition:
    start = datetime(year, month, day, tzinfo=UTC)
    return Partition(_ms(start), _ms(start) + DAY_MS, f"{year:04d}-{month:02d}-{day:02d}")


def hour_partition(ts: int) -> Partition:
    """The hour file holding timestamp `ts` (a live day's sub-partition: see the module doc)."""
    return _hour_partition(ts // HOUR_MS)


@functools.lru_cache(maxsize=4096)
def _hour_partition(hour: int) -> Partition:
    day = _partition_of_day(hour * HOUR_MS // DAY_MS, Period.DAY)
    start = hour * HOUR_MS
    return Partition(start, start + HOUR_MS, f"{day.key}T{(start - day.start) // HOUR_MS:02d}")


def is_month(part: Partition) -> bool:
    """Whether `part` is a month file (named `YYYY-MM`)."""
    return len(part.key) == 7


def is_hour(part: Partition) -> bool:
    """Whether `part` is an hour file (inside a day partition) rather than a whole span."""
    return part.end - part.start == HOUR_MS


def month_partition(year: int, month: int) -> Partition:
    start = datetime(year, month, 1, tzinfo=UTC)
    nxt = (
        datetime(year + 1, 1, 1, tzinfo=UTC)
        if month == 12
        else datetime(year, month + 1, 1, tzinfo=UTC)
    )
    return Partition(_ms(start), _ms(nxt), f"{year:04d}-{month:02d}")


def year_partition(year: int) -> Partition:
    start = datetime(year, 1, 1, tzinfo=UTC)
    nxt = datetime(year + 1, 1, 1, tzinfo=UTC)
    return Partition(_ms(start), _ms(nxt), f"{year:04d}")


@functools.lru_cache(maxsize=65536)
def partition_from_filename(name: str, period: Period) -> Partition | None:
    """Parse a partition file name (`2026-11-21.parquet` or its hour `2026-11-21T13.parquet`,
    `2026-11.parquet`, `2026.parquet`) of the given period; None for anything else."""
    if period is Period.DAY:
        d = _DAY_FILE_RE.fullmatch(name) or _HOUR_FILE_RE.fullmatch(name)
        if d is None:
            return None
        try:
            day = day_partition(int(d.group(1)), int(d.group(2)), int(d.group(3)))
        except ValueError:  # 2026-02-30
            return None
        if d.re is _DAY_FILE_RE:
            return day
        hour = int(d.group(4))
        return hour_partition(day.start + hour * HOUR_MS) if hour < 24 else None
    if period is Period.MONTH:
        m = _MONTH_FILE_RE.fullmatch(name)
        if m is None or not 1 <= int(m.group(2)) <= 12:
            return None
        return month_partition(int(m.group(1)), int(m.group(2)))
    y = _YEAR_FILE_RE.fullmatch(name)
    return year_partition(int(y.group(1))) if y else None


def list_partitions(directory: Path, period: Period) -> list[Partition]:
    """The partitions present in `directory`, oldest first (empty if it does not exist); a
    longer span comes before the shorter ones inside it (a month before the day files an older
    version left, a day before its hour files): the later ones hold the newer rows.

    A month series lists day files too (its newest month's, and an older layout's day and hour
    files until `store.migrate` folds them in at the next start)."""
    found: list[Partition] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                part = partition_from_filename(name, period)
                if part is None and period is Period.MONTH and len(name) > 15:  # (YYYY-MM-DD...)
                    part = partition_from_filename(name, Period.DAY)
                if part is not None and entry.is_file():
                    found.append(part)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found.sort(key=lambda p: (p.start, -p.end))
    return found


def overlapping(parts: list[Partition], start: int | None, end: int | None) -> list[Partition]:
    """The partitions of `parts` that may hold a timestamp in [start, end)."""
    return [p for p in parts if (start is None or p.end > start) and (end is None or p.start < end)]


@dataclass(frozen=True, slots=True)
class Layout:
    """Path arithmetic under one data directory."""

    root: Path

    @property
    def candles_root(self) -> Path:
        return self.root / "candles"

    @property
    def funding_root(self) -> Path:
        return self.root / "funding"

    @property
    def funding_live_root(self) -> Path:
        return self.root / "funding_live"

    def candle_dir(self, inst_id: str, tf: Timeframe) -> Path:
        return self.candles_root / validate_inst_id(inst_id) / validate_timeframe(tf).name

    def funding_dir(self, inst_id: str) -> Path:
        return self.funding_root / validate_inst_id(inst_id)

    def funding_live_dir(self, inst_id: str) -> Path:
        return self.funding_live_root / validate_inst_id(inst_id)

    def candle_series(self) -> Iterator[tuple[str, str]]:
        """(inst_id, timeframe) for every candle directory holding at least one partition."""
        for inst_dir in _subdirs(self.candles_root):
            if not INST_ID_RE.fullmatch(inst_dir.name):
                continue
            for tf_dir in _subdirs(inst_dir):
                if tf_dir.name not in VALID_TIMEFRAMES:
                    continue
                if list_partitions(tf_dir, candle_period(Timeframe.parse(tf_dir.name))):
                    yield inst_dir.name, tf_dir.name

    def instrument_series(self, root: Path, period: Period) -> Iterator[str]:
        """inst_ids under `root` (funding or funding_live) holding at least one partition."""
        for inst_dir in _subdirs(root):
            if INST_ID_RE.fullmatch(inst_dir.name) and list_partitions(inst_dir, period):
                yield inst_dir.name


def _subdirs(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
