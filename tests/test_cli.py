"""The command line as a user meets it: help, documented commands, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from okx_collector.cli import cli

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = sorted(cli.list_commands(click.Context(cli)))


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
    # (asyncio's debug mode, on in CI, notes each step of a task that took over 0.1 s: under
    # load, ccxt's first request does. Those notes are not the command's output.)
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not re.search(r"Executing <.*> took [\d.]+ seconds", line)
    ]
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
        "backfill", "--data-dir", str(tmp_path / "d"), "--rest-url", "http://127.0.0.1:9"
    )
    assert_one_line_error(result, 1, "cannot reach the exchange")


def test_unwritable_data_dir_is_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("backfill", "--data-dir", str(blocker / "data"))
    assert_one_line_error(result, 1, "not writable")


def _options(command: str) -> set[str]:
    params = cli.commands[command].params if command in cli.commands else []
    return {opt for p in params for opt in p.opts}


def test_each_command_lists_only_the_options_it_reads() -> None:
    for command in ("status", "export-qlib"):
        assert not _options(command) & {"--ws-url", "--since", "--until", "--funding"}, command
    assert "--rest-url" in _options("status")  # asked for the exchange's clock only
    assert "--rest-url" not in _options("export-qlib")
    assert "--ws-url" not in _options("backfill")  # backfill is REST only
    assert {"--ws-url", "--since", "--mode", "--poll-interval"} <= _options("collect")
    result = CliRunner().invoke(cli, ["status", "--since", "2d"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_an_environment_variable_a_command_does_not_read_cannot_fail_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "candles").mkdir(parents=True)
    env = {"POLL_INTERVAL": "abc", "OKX_COLLECTOR_MODE": "fast", "OKX_COLLECTOR_REST_URL": ""}
    result = run_cli("status", "--data-dir", str(data), "--rest-url", "http://127.0.0.1:9",
                     env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no series stored yet" in result.stdout
    config = tmp_path / "shared.toml"
    config.write_text('mode = "fast"\nsince = "soon"\n')
    result = run_cli("export-qlib", "--config", str(config), "--data-dir", str(data),
                     "--out", str(tmp_path / "q"))  # fmt: skip
    assert "mode" not in result.stderr and "--since" not in result.stderr, result.stderr
    # The command that reads it still refuses it.
    assert_one_line_error(run_cli("collect", env=env), 2, "--poll-interval must be a number")


def test_no_arguments_prints_the_help_and_succeeds() -> None:
    result = run_cli()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: okx-collector")
    assert "Commands:" in result.stdout and "simulate" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["bogus"], "(see okx-collector --help)"),
        (["status", "--ws-url", "x"], "(see okx-collector status --help)"),
        (["export-qlib"], "(see okx-collector export-qlib --help)"),
    ],
)
def test_usage_errors_point_at_a_help_that_exists(args: list[str], hint: str) -> None:
    result = run_cli(*args)
    assert_one_line_error(result, 2, hint)
    assert "cli --help" not in result.stderr


def test_help_does_not_import_the_simulator_or_the_exchange() -> None:
    probe = (
        "import sys, okx_collector.cli as c\n"
        "heavy = [m for m in ('okx_collector.simulator', 'ccxt', 'aiohttp', 'pyarrow', 'numpy')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, env=os.environ.copy())  # fmt: skip
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
    # And the simulator command still runs from the same group, listed with its own summary.
    help_text = CliRunner().invoke(cli, ["simulate", "--help"])
    assert help_text.exit_code == 0 and "--speed" in help_text.output
    simulate = cli.get_command(click.Context(cli), "simulate")
    assert simulate is not None
    assert type(cli).lazy["simulate"][1] == simulate.get_short_help_str(limit=80)


def test_collect_on_its_default_timeframe_says_the_store_holds_others(tmp_path: Path) -> None:
    from okx_collector.models import Candle
    from okx_collector.store import Store
    from okx_collector.timeframes import Timeframe

    data = tmp_path / "data"
    store = Store(data)
    for name in ("1m", "15m", "1h"):
        store.write_candles("BTC-USDT", Timeframe.parse(name),
                            [Candle(1_790_000_000_000 // 3_600_000 * 3_600_000, 1, 1, 1, 1, 1, 1,
                                    "backfill")])  # fmt: skip
    down = "http://127.0.0.1:9"  # (the warning comes first; then the exchange cannot be reached)
    result = run_cli("collect", "--data-dir", str(data), "--rest-url", down)
    warnings = [line for line in result.stderr.splitlines() if "the store also holds" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], result.stderr
    assert "the store also holds 1h, 1m candles, which collect does not follow" in warnings[0]
    assert "pass --timeframes 1h,1m,15m to keep them fresh" in warnings[0]
    result = run_cli("collect", "--data-dir", str(data), "--rest-url", down, "--timeframes", "1m")
    assert "the store also holds" not in result.stderr  # chosen on purpose: nothing to say


def test_status_check_exits_3_from_the_command_line(tmp_path: Path) -> None:
    from okx_collector.models import Candle
    from okx_collector.store import Store
    from okx_collector.timeframes import Timeframe

    data = tmp_path / "data"
    h1 = Timeframe.parse("1h")
    t0 = 1_790_000_000_000 // h1.ms * h1.ms
    rows = [Candle(t0 + k * h1.ms, 1, 1, 1, 1, 1, 1, "backfill") for k in (0, 1, 5)]
    Store(data).write_candles("BTC-USDT", h1, rows)
    args = ["status", "--data-dir", str(data), "--rest-url", "http://127.0.0.1:9"]
    result = run_cli(*args, "--check", "--json")
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["series"][0]["gap_count"] == 1
    assert result.stderr.startswith("status --check: 1 of 1 series: BTC-USDT 1h (1 gap(s), stale")
    assert run_cli(*args).returncode == 0  # without --check, a report is not a failure
