"""The command line as a user meets it: help, documented commands, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from okx_collector.cli import cli

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = sorted(cli.commands)


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert set(COMMANDS) == {"simulate", "backfill", "collect", "status", "export-qlib", "demo"}
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert len(result.output.splitlines()) > 3
        assert f"okx-collector {name}" in readme, f"{name} is not documented in the README"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "okx_collector", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["backfill", "--timeframes", "15x"], 2, ["unknown timeframe", "1m, 3m"]),
        (["backfill", "--since", "yesterday"], 2, ["--since", "30d"]),
        (["backfill", "--config", "/nonexistent.toml"], 2, ["does not exist"]),
        (["backfill", "--since", "2d", "--until", "3d"], 2, ["is not before --until"]),
        (["backfill", "--symbols", " "], 2, ["--symbols is empty"]),
        (["collect", "--mode", "fast"], 2, ["fast"]),
        (["export-qlib", "--out", "x", "--timeframe", "2m"], 2, ["unknown timeframe"]),
        (["status", "--data-dir", "/nonexistent/data"], 2, ["no dataset"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], code: int, words: list[str]) -> None:
    assert_one_line_error(run_cli(*args), code, *words)


def test_unreachable_exchange_is_exit_1(tmp_path: Path) -> None:
    result = run_cli(
        "backfill", "--data-dir", str(tmp_path / "d"), "--rest-url", "http://127.0.0.1:9",
        "--ws-url", "ws://127.0.0.1:9/ws/v5",
    )  # fmt: skip
    assert_one_line_error(result, 1, "cannot reach the exchange")


def test_unwritable_data_dir_is_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("backfill", "--data-dir", str(blocker / "data"))
    assert_one_line_error(result, 1, "not writable")
