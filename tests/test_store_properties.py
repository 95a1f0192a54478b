"""Property: any sequence of writes leaves exactly the union, later value winning (a dict model)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okx_collector.models import Candle, FundingRate, Source
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

TFS = [Timeframe.parse("1h"), Timeframe.parse("1d")]
INSTS = ["BTC-USDT", "ETH-USDT-SWAP"]
# Around two month boundaries (and a year boundary for the yearly funding partitions).
ORIGINS = [
    int(datetime(2025, 12, 29, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2026, 1, 30, tzinfo=UTC).timestamp() * 1000),
]

candle_rows = st.tuples(
    st.sampled_from(ORIGINS),
    st.integers(0, 80),  # candle index from the origin
    st.sampled_from([1.0, 2.0, 3.5]),  # few prices, so identical re-writes happen often
    st.sampled_from(["backfill", "poll", "ws"]),
)
batch = st.tuples(st.sampled_from(INSTS), st.sampled_from(TFS), st.lists(candle_rows, max_size=30))


def make(tf: Timeframe, origin: int, i: int, price: float, source: Source) -> Candle:
    return Candle(
        origin + i * tf.ms, price, price + 1, price - 0.5, price, price * 3, price * 9, source
    )


Model = dict[tuple[str, str], dict[int, Candle]]


def apply(model: Model, inst: str, tf: Timeframe, candles: list[Candle]) -> int:
    """The store's contract as a dict: later value wins; same values keep the stored source."""
    target = model.setdefault((inst, tf.name), {})
    final: dict[int, Candle] = {}
    for c in candles:
        final[c.ts] = c
    changed = 0
    for ts, c in final.items():
        old = target.get(ts)
        if old is None or old[1:7] != c[1:7]:
            target[ts] = c
            changed += 1
    return changed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batch, min_size=1, max_size=8))
def test_writes_equal_dict_model(
    batches: list[tuple[str, Timeframe, list[tuple[int, int, float, Source]]]],
) -> None:
    model: Model = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        for inst, tf, rows in batches:
            candles = [make(tf, o, i, p, s) for o, i, p, s in rows]
            apply(model, inst, tf, candles)
            assert store.write_candles(inst, tf, candles) == len(candles)
        # Through the journal, then after a compaction; a fresh Store and the writing one.
        for reader in (store, Store(Path(tmp)), _compacted(store)):
            stored = {k for k, v in model.items() if v}
            assert set(reader.list_candle_series()) == stored
            for (inst, tf_name), rows_by_ts in model.items():
                tf = Timeframe.parse(tf_name)
                table = reader.read_candles(inst, tf)
                got = [
                    Candle(*r.values())
                    for r in table.select(
                        ["ts", "open", "high", "low", "close", "volume", "quote_volume", "source"]
                    ).to_pylist()
                ]
                assert got == [rows_by_ts[ts] for ts in sorted(rows_by_ts)]
                assert reader.last_candle_ts(inst, tf) == (max(rows_by_ts) if rows_by_ts else None)
                assert reader.first_candle_ts(inst, tf) == (min(rows_by_ts) if rows_by_ts else None)


funding_rows = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.sampled_from([0.0001, -0.0002]),
        st.sampled_from(["backfill", "poll"]),
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None)
@given(st.lists(funding_rows, min_size=1, max_size=6))
def test_funding_writes_equal_dict_model(batches: list[list[tuple[int, float, str]]]) -> None:
    origin = int(datetime(2025, 12, 25, tzinfo=UTC).timestamp() * 1000)
    step = 8 * 3_600_000
    model: dict[int, FundingRate] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        for rows in batches:
            rates = [FundingRate(origin + i * step, r, r, s) for i, r, s in rows]  # type: ignore[arg-type]
            final = {r.funding_time: r for r in rates}
            for t, r in final.items():
                if t not in model or model[t][1:3] != r[1:3]:
                    model[t] = r
            assert store.write_funding("BTC-USDT-SWAP", rates) == len(rates)
        for reader in (store, _compacted(store)):
            table = reader.read_funding("BTC-USDT-SWAP")
            got = [
                FundingRate(*r.values())
                for r in table.select(
                    ["funding_time", "funding_rate", "realized_rate", "source"]
                ).to_pylist()
            ]
            assert got == [model[t] for t in sorted(model)]


def _compacted(store: Store) -> Store:
    store.compact()
    assert store.journal_pending() == 0
    return store
