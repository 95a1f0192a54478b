"""The README's offline main job, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq


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
    assert "pd.read_parquet(" in result.stdout
