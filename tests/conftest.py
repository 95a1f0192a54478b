"""Shared fixtures: a running simulator on a free port, settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from okx_collector.config import Settings, build_settings
from okx_collector.simulator import Simulator
from okx_collector.timeframes import DAY_MS

# A fixed simulated start keeps every test's market identical from run to run.
SIM_START = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS + 37 * 60_000  # 00:37 UTC


def fast_delays() -> Iterator[float]:
    """Backoff for tests: short, but still growing."""
    delay = 0.02
    while True:
        yield delay
        delay = min(delay * 2, 0.2)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=3, speed=1.0, start_ms=SIM_START, rate_limit_scale=0) as s:
        yield s


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(sim: Any, **flags: Any) -> Settings:
        values = {
            "data_dir": str(tmp_path / "data"),
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
        }
        values.update({k: v for k, v in flags.items()})
        return build_settings(values, env={})

    return make
