"""`export-qlib` and `backfill` from the command line: what they export, their summary line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

T0 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000


def fill(data: Path) -> None:
    store = Store(data)
    for tf_name, count in (("1m", 120), ("15m", 8)):
        tf = Timeframe.parse(tf_name)
        for inst in ("BTC-USDT", "ETH-USDT"):
            rows = [Candle(T0 + k * tf.ms, 1, 2, 0.5, 1.5, 1, 1, "backfill") for k in range(count)]
            store.write_candles(inst, tf, rows)


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "okx_collector", "export-qlib", *args],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip


def test_every_timeframe_named_is_exported(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "qlib"
    fill(data)
    result = export("--data-dir", str(data), "--out", str(out), "--timeframes", "1m,15m")
    assert result.returncode == 0, result.stderr
    assert (out / "calendars" / "1min.txt").read_text().count("\n") == 120
    assert (out / "calendars" / "15min.txt").read_text().count("\n") == 8
    assert (out / "features" / "btc-usdt" / "close.15min.bin").exists()
    assert (out / "features" / "btc-usdt" / "close.1min.bin").exists()
    summaries = [line for line in result.stderr.splitlines() if line.startswith("export-qlib:")]
    assert [line.split()[:3] for line in summaries] == [
        ["export-qlib:", "qlib", "1min:"],
        ["export-qlib:", "qlib", "15min:"],
    ], result.stderr


def test_symbols_narrow_the_export(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "qlib"
    fill(data)
    result = export("--data-dir", str(data), "--out", str(out), "--symbols", "ETH/USDT",
                    "--timeframes", "15m")  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = (out / "instruments" / "all.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == ["ETH-USDT"]
    result = export("--data-dir", str(data), "--out", str(out), "--symbols", "XRP/USDT,DOGE/USDT")
    assert result.returncode == 2
    assert "nothing stored for 2 symbol(s): XRP/USDT, DOGE/USDT" in result.stderr


def test_a_timeframe_the_store_lacks_and_two_timeframe_flags_are_refused(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "qlib"
    fill(data)
    result = export("--data-dir", str(data), "--out", str(out), "--timeframes", "1m,1h")
    assert result.returncode == 2 and "has no 1h candles (it holds: 15m, 1m)" in result.stderr
    assert not (out / "calendars" / "1min.txt").exists()  # refused before anything is written
    result = export("--data-dir", str(data), "--out", str(out), "--timeframe", "1m",
                    "--timeframes", "15m")  # fmt: skip
    assert result.returncode == 2 and "not both" in result.stderr


def test_the_summary_is_one_unwrapped_line_or_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tmp_path / ("a-long-directory-name-" * 4) / "qlib"  # longer than 80 columns in all
    fill(data)
    result = export("--data-dir", str(data), "--out", str(out), "--timeframes", "15m")
    assert result.returncode == 0, result.stderr
    summaries = [line for line in result.stderr.splitlines() if "export-qlib:" in line]
    assert len(summaries) == 1 and summaries[0].endswith(str(out)), result.stderr
    assert not any(line != line.rstrip() for line in result.stderr.splitlines())
    result = export("--data-dir", str(data), "--out", str(out), "--timeframes", "15m",
                    "--log-format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    summary = entries[-1]
    assert summary["message"].startswith("export-qlib: qlib 15min")
    assert summary["summary"]["timeframe"] == "15m" and summary["summary"]["rows"] == 16


def test_the_backfill_summary_is_json_under_log_format_json(tmp_path: Path) -> None:
    from okx_collector.simulator import SimulatorThread
    from tests.conftest import SIM_START

    with SimulatorThread(seed=3, start_ms=SIM_START, rate_limit_scale=0) as sim:
        result = subprocess.run(
            [sys.executable, "-m", "okx_collector", "backfill", "--data-dir",
             str(tmp_path / "data"), "--rest-url", sim.rest_url, "--symbols", "BTC/USDT,ETH/USDT",
             "--timeframes", "1h", "--since", "2d", "--log-format", "json"],
            capture_output=True, text=True, timeout=60, env=os.environ.copy(),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    summary = entries[-1]
    assert summary["message"].startswith("backfill: ")
    assert summary["summary"]["candle_rows"] == 2 * 47 and summary["summary"]["series"] == 2
    assert summary["summary"]["funding_rows"] == 12  # two perpetuals, 2 days at 8 h
