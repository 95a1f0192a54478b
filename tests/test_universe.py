"""Universe selectors: the grammar and what each selects (pure)."""

from __future__ import annotations

import pytest

from okx_collector.config import build_settings
from okx_collector.errors import BadInput
from okx_collector.instruments import Instrument
from okx_collector.universe import Selector, parse_selector, select, split_entries

LISTED = {
    i.inst_id: i
    for i in (
        Instrument("BTC/USDT", "BTC-USDT", True, quote="USDT"),
        Instrument("ETH/USDT", "ETH-USDT", True, quote="USDT"),
        Instrument("NEW/USDT", "NEW-USDT", True, quote="USDT", live=False),  # preopen
        Instrument("ETH/BTC", "ETH-BTC", True, quote="BTC"),
        Instrument("BTC/USDT:USDT", "BTC-USDT-SWAP", False, quote="USDT"),
        Instrument("ETH/USDT:USDT", "ETH-USDT-SWAP", False, quote="USDT"),
        Instrument("BTC/USD:BTC", "BTC-USD-SWAP", False, quote="BTC"),
    )
}
VOLUMES = {"BTC-USDT": 9e9, "ETH-USDT": 5e9, "BTC-USDT-SWAP": 1e9, "ETH-USDT-SWAP": 2e9}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spot:USDT", Selector("spot", "USDT", None)),
        ("SWAP:usdt:TOP50", Selector("swap", "USDT", 50)),
        (" swap:BTC ", Selector("swap", "BTC", None)),
    ],
)
def test_parse(text: str, expected: Selector) -> None:
    assert parse_selector(text) == expected
    assert str(parse_selector(str(expected))) == str(expected)


@pytest.mark.parametrize("text", ["spot:", "spot:USDT:top0", "spot:USDT:top", "swap:US-DT",
                                  "spot:USDT:first5", "spot:USDT:top05"])  # fmt: skip
def test_malformed_selectors_say_the_grammar(text: str) -> None:
    with pytest.raises(BadInput, match=r"bad selector .* use spot:CCY"):
        parse_selector(text)


def test_split_and_select() -> None:
    plain, selectors = split_entries(["BTC/USDT:USDT", "spot:USDT", "swap:USDT:top1"])
    assert plain == ["BTC/USDT:USDT"]
    got = [i.inst_id for i in select(selectors, LISTED, VOLUMES)]
    # live USDT spot pairs (not the preopen one), and the perpetual with the most volume
    assert got == ["BTC-USDT", "ETH-USDT", "ETH-USDT-SWAP"]
    assert [i.inst_id for i in select([Selector("swap", "BTC", None)], LISTED, {})] == [
        "BTC-USD-SWAP"
    ]
    assert select([Selector("spot", "EUR", None)], LISTED, {}) == []


def test_a_bad_selector_fails_before_any_network_call() -> None:
    with pytest.raises(BadInput, match="bad selector 'SPOT:USDT:TOPX'"):
        build_settings({"symbols": "BTC/USDT,spot:USDT:topx"}, env={})
