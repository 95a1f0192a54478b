"""The README's offline main job, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from okx_collector.live.report import latency_text


def test_demo_runs_offline_and_leaves_a_dataset_and_a_qlib_export(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "okx_collector", "demo", "--data-dir", str(out),
         "--live-seconds", "6"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for name in ("BTC-USDT", "ETH-USDT", "ADA-USDT", "DOT-USDT", "LINK-USDT"):
        for tf in ("1m", "15m"):
            files = sorted((out / "dataset" / "candles" / name / tf).glob("*.parquet"))
            assert files, (name, tf)
            table = pq.read_table(files[-1])
            assert table.num_rows > 0
        assert list((out / "dataset" / "funding" / f"{name}-SWAP").glob("*.parquet"))
    manifest = json.loads((out / "qlib" / "manifest.json").read_text())
    assert manifest
    assert (out / "qlib" / "calendars" / "15min.txt").read_text().count("\n") > 150
    assert "qlib.init(provider_uri=" in result.stdout
    # The Python it prints pastes as it is: whole statements, flush left, one block per library;
    # the read API's block runs and prints the newest candles.
    pandas = _block(result.stdout, "Load it as a pandas DataFrame:")
    assert pandas[0] == "from okx_collector import read_candles" and len(pandas) == 3
    ran = subprocess.run([sys.executable, "-c", "\n".join(pandas)], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert "quote_volume" in ran.stdout and "+00:00" in ran.stdout
    assert "coverage.html" in result.stdout and (out / "coverage.html").stat().st_size > 1000
    qlib = _block(result.stdout, "Load it with qlib")
    assert qlib[0] == "import qlib" and len(qlib) == 4
    compile("\n".join(qlib), "qlib", "exec")
    assert f'provider_uri="{(out / "qlib").resolve()}"' in qlib[2]


def _block(stdout: str, heading: str) -> list[str]:
    """The lines after `heading` up to the next heading or blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    block = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("Load it"):
            break
        block.append(line)
    return block


def test_the_heartbeat_reports_close_to_disk_in_real_seconds() -> None:
    # 9.96 s of a simulator's clock at 60x is 0.17 s of real time: the writer's actual delay.
    assert latency_text([9_960] * 100, 60.0) == " close->disk p50 0.17s p99 0.17s"
    assert latency_text([120, 170], 1.0) == " close->disk p50 0.14s p99 0.17s"  # OKX: rate 1
    assert latency_text([], 60.0) == ""
