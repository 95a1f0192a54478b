"""Refused derived subscriptions: left out of the websocket until the retry time, one warning
once a poll shows the id is listed."""

from __future__ import annotations

import logging

import pytest

from okx_collector.live.derived_parts import REFUSED_RETRY_SECONDS, Refusals


def test_a_refusal_holds_until_the_retry_time_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    refusals = Refusals(monotonic=lambda: clock[0])
    assert not refusals.active("open-interest", "BTC-USDT-SWAP")
    refusals.add("open-interest", "BTC-USDT-SWAP", "doesn't exist")
    assert refusals.active("open-interest", "BTC-USDT-SWAP") and refusals.count == 1
    assert not refusals.active("mark-price-candle1m", "BTC-USDT-SWAP")  # per channel
    with caplog.at_level(logging.WARNING, logger="okx_collector"):
        refusals.polled("open-interest", "BTC-USDT-SWAP")
        refusals.polled("open-interest", "BTC-USDT-SWAP")
        refusals.polled("open-interest", "ETH-USDT-SWAP")  # never refused: nothing to say
    assert [r.getMessage()[:45] for r in caplog.records] == [
        "OKX refused the open-interest subscription of"
    ]
    clock[0] += REFUSED_RETRY_SECONDS - 1
    assert refusals.active("open-interest", "BTC-USDT-SWAP")
    clock[0] += 1
    assert not refusals.active("open-interest", "BTC-USDT-SWAP")  # asked for again
