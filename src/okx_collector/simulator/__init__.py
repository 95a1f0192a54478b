"""An OKX v5-compatible simulator (REST + websockets) for offline tests, demos and benchmarks.

It speaks the part of OKX that unmodified ccxt (`ccxt`, `ccxt.async_support`, `ccxt.pro`) uses
for public market data, serves a deterministic seeded market, enforces OKX's rate limits and has
fault switches. It imports nothing from the rest of okx_collector. See docs/simulator.md.
"""

from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.market import Market
from okx_collector.simulator.server import Simulator
from okx_collector.simulator.stats import Stats
from okx_collector.simulator.thread import SimulatorThread

__all__ = ["DerivedMarket", "Faults", "Market", "Simulator", "SimulatorThread", "Stats"]
