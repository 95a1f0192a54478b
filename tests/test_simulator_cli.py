"""`simulate` as a subprocess and through click; SimulatorThread with the sync ccxt client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import ccxt
import pytest
from click.testing import CliRunner

from okx_collector.simulator import SimulatorThread
from okx_collector.simulator.cli import simulate
from sim_helpers import HOUR, START_MS, config

pytestmark = pytest.mark.timeout(60)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def test_simulate_subprocess_prints_urls_serves_and_exits_0_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "okx_collector.simulator.cli",
            "--port",
            "0",
            "--seed",
            "3",
            "--speed",
            "60",
            "--start",
            "2026-01-15T00:07:30Z",
            "--rate-limit-scale",
            "0",
            "--extra-instruments",
            "2",
            "--push-interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        rest = proc.stdout.readline().split()
        ws = proc.stdout.readline().split()
        snippet = [proc.stdout.readline() for _ in range(3)]
        assert rest[0] == "REST" and rest[1].startswith("http://127.0.0.1:")
        assert ws[0] == "WS" and ws[1] == rest[1].replace("http", "ws") + "/ws/v5"
        assert "ccxt.pro.okx" in "".join(snippet) and rest[1] in "".join(snippet)
        ex = ccxt.okx({"urls": {"api": {"rest": rest[1], "ws": ws[1]}}, "timeout": 5000})
        ex.load_markets()
        assert "SIM0002/USDT:USDT" in ex.symbols
        assert ex.fetch_time() >= START_MS
        rows = ex.fetch_ohlcv("BTC/USDT", "1h", since=START_MS - 48 * HOUR, limit=24)
        assert len(rows) == 24
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["--speed", "0"],
        ["--start", "yesterday-ish"],
        ["--port", "70000"],
        ["--extra-instruments", "-1"],
        ["--push-interval", "0"],
        ["--rate-limit-scale", "-2"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 2
    assert "Invalid value" in result.output and "Traceback" not in result.output


def test_busy_port_is_a_clean_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(simulate, ["--port", str(port)])
    assert result.exit_code == 1 and "cannot listen" in result.output


def test_help_documents_every_option() -> None:
    result = CliRunner().invoke(simulate, ["--help"])
    for option in (
        "--host",
        "--port",
        "--seed",
        "--speed",
        "--start",
        "--rate-limit-scale",
        "--extra-instruments",
        "--push-interval",
    ):
        assert option in result.output


def test_simulator_thread_with_the_sync_client() -> None:
    with SimulatorThread(seed=5, start_ms=START_MS, rate_limit_scale=0) as sim:
        ex = ccxt.okx(config(sim))
        ex.load_markets()
        rows = ex.fetch_ohlcv("LINK/USDT:USDT", "4h", since=START_MS - 40 * 4 * HOUR, limit=30)
        expected = sim.market.candles("LINK-USDT-SWAP", "4h", rows[0][0], rows[-1][0] + 1)
        assert [list(r) for r in rows] == [list(e[:6]) for e in expected]
        sim.faults.rest_5xx_share = 1.0
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.fetch_time()
        assert sim.drop_connections() == 0
        assert abs(sim.now_ms() - ex.milliseconds()) > 1000  # its own clock, not ours
    assert sim.stats.injected_5xx == 1
