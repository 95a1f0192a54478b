"""The `okx-collector` command line: parse options, build Settings, call one library function.

No logic lives here. Every error a user can cause ends as one line on stderr and exit code 2 (bad
input) or 1 (anything else); tracebacks only appear with `--log-level DEBUG`. A stop request ends
`backfill` with 130 (SIGINT) or 143 (SIGTERM) after one line saying what was saved; `collect`
flushes and exits 0.
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from okx_collector import __version__
from okx_collector.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    MODES,
    Settings,
    build_settings,
)
from okx_collector.errors import BadInput, CollectorError, Interrupted
from okx_collector.logsetup import configure_logging

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("okx_collector")


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum, "nothing was saved yet")


def _fail(message: str, code: int) -> None:
    click.echo(f"okx-collector: error: {message}", err=True)
    sys.exit(code)


def reports_errors(func: F) -> F:
    """Turn every exception into a one-line message and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CollectorError as exc:
            log.debug("command failed", exc_info=True)
            _fail(str(exc), exc.exit_code)
        except Interrupted as exc:
            click.echo(f"okx-collector: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            log.debug("unexpected failure", exc_info=True)
            _fail(
                f"unexpected {type(exc).__name__}: {exc} (run with --log-level DEBUG for details)",
                1,
            )
        return None

    return wrapper  # type: ignore[return-value]


def _options(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Apply click options in the order they are listed (that is the order --help shows)."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


# Each command declares only the options it reads (a flag that is accepted and ignored would be
# a lie); the settings it reads are exactly these options' names (see `settings_from`).
COMMON = _options(
    click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                 help="Dataset folder [env OKX_COLLECTOR_DATA_DIR; default ./data]."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="TOML file with any of these settings (flags and env win)."),
    click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
                 help="Logging detail [default INFO]."),
    click.option("--log-format", type=click.Choice(LOG_FORMATS),
                 help="text or json lines on stderr (summaries too) [default text]."),
)  # fmt: skip
SELECTORS = "selectors: spot:CCY, swap:CCY, either with :topN by 24 h volume (spot:USDT, "
# backfill and collect: what to fetch from OKX.
FETCHING = _options(
    COMMON,
    click.option("--symbols", help="Comma list of ccxt symbols (BTC/USDT,ETH/USDT:USDT), OKX "
                 f"instIds, or {SELECTORS}swap:USDT:top50) [default: BTC/USDT,ETH/USDT,ADA/USDT,"
                 "DOT/USDT,LINK/USDT]."),
    click.option("--timeframes", help="Comma list of 1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d 1w "
                 "[default 15m]."),
    click.option("--funding/--no-funding", default=None,
                 help="Also collect perpetual funding rates [default: on]."),
    click.option("--series", help="Comma list of trade, mark, index, oi: trade candles, mark "
                 "and index candles, open interest [default: trade]."),
    click.option("--since", help="Start: ISO date/time in UTC (2026-11-01, 2026-11-01T06:00) "
                 "or a duration back from the exchange's now (30d, 12h)."),
    click.option("--until", help="End (exclusive), same forms as --since [default: now]."),
    click.option("--rest-url", help="OKX-compatible REST endpoint [default https://www.okx.com]."),
)  # fmt: skip
# status and export-qlib: a filter over what the store holds, by default everything.
READING = _options(
    COMMON,
    click.option("--symbols", help="Only these: comma list of ccxt symbols or OKX instIds "
                 f"(BTC/USDT, BTC-USDT-SWAP), or {SELECTORS}swap:USDT) [default: every stored "
                 "instrument]."),
)  # fmt: skip
WS_URL = click.option(
    "--ws-url", help="OKX-compatible websocket base [default wss://ws.okx.com:8443/ws/v5]."
)


def settings_from(kwargs: dict[str, Any]) -> Settings:
    """Settings from the command's own options; env and config values it does not read are
    ignored (see `build_settings`)."""
    config_file = kwargs.pop("config_file", None)
    params = click.get_current_context().command.params
    used = {p.name for p in params if p.name} | {"log_level", "log_format"}
    settings = build_settings(kwargs, config_file=config_file, used=used)
    configure_logging(settings.log_level, settings.log_format)
    return settings


class _LazyGroup(click.Group):
    """Commands whose modules are imported only when they run: `okx-collector --help` must not
    pay for the simulator (aiohttp, numpy), about 0.2 s."""

    # name -> ("module:attribute", the one-line help --help lists without importing it)
    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "simulate": (
            "okx_collector.simulator.cli:simulate",
            "Run the OKX simulator (REST + websockets) until SIGINT/SIGTERM; print its URLs.",
        ),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit=80)))
            else:
                rows.append((name, self.lazy[name][1]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=_LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="okx-collector")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Keep a complete, exact, crash-safe dataset of OKX candles and funding rates.

    Backfill history over REST, collect live over websockets with a REST fallback, check coverage
    with `status`, export to qlib, or try everything offline with `demo`.
    """
    if ctx.invoked_subcommand is None:  # no arguments: show what there is, successfully
        click.echo(ctx.get_help())
        return
    # From here on SIGTERM has its usual meaning, unless the command installs its own handling.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@cli.command()
@FETCHING
@reports_errors
def backfill(**kwargs: Any) -> None:
    """Fetch history from --since (default 30d) to --until into the store.

    Fetches only what the store lacks: resumes after a kill, fills interior gaps, prepends when
    --since is earlier than the data. Funding history too (OKX keeps about 3 months).

    Exit codes: 0 done; 1 failed (e.g. a full disk); 2 bad input; 130/143 stopped by
    SIGINT/SIGTERM, after writing what was fetched (a rerun resumes there).
    """
    # From the first moment (importing takes about a second), SIGTERM stops it like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    from okx_collector.backfill import run_backfill

    run_backfill(settings_from(kwargs))


@cli.command()
@FETCHING
@WS_URL
@click.option("--mode", type=click.Choice(MODES), help="ws, poll, or auto = ws with a REST "
              "fallback per stale series [default auto].")  # fmt: skip
@click.option("--poll-interval", type=float, help="Seconds between REST polls [env POLL_INTERVAL; "
              "default 60].")  # fmt: skip
@click.option("--heartbeat", type=float, help="Seconds between heartbeat log lines [default 60].")
@click.option("--metrics-port", type=int, help="Serve Prometheus /metrics and /health on this "
              "port (docs/operations.md) [default: off].")  # fmt: skip
@click.option("--metrics-host", help="Address the metrics port listens on [default 127.0.0.1].")
@reports_errors
def collect(**kwargs: Any) -> None:
    """Catch up from the last stored candle, then stay live until SIGINT/SIGTERM."""
    # Until the event loop installs its own handlers (after ~1 s of imports), a stop request
    # simply ends the process cleanly: nothing has been written yet.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    from okx_collector.live.run import run_collect
    from okx_collector.stored import warn_unfollowed

    settings = settings_from(kwargs)
    warn_unfollowed(settings)
    run_collect(settings)


@cli.command()
@READING
@click.option(
    "--timeframes", help="Only these: comma list of timeframes [default: every stored one]."
)
@click.option(
    "--rest-url",
    help="OKX-compatible REST endpoint, asked only for its clock (ages "
    "are measured on the exchange's time) [default https://www.okx.com].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 3 when a listed series has a gap or is stale "
    "(its last closed candle is more than two bars old), for cron and CI.",
)
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML page of every series' timeline to FILE instead "
              "of the table.")  # fmt: skip
@reports_errors
def status(as_json: bool, check: bool, html_file: Path | None, **kwargs: Any) -> None:
    """Coverage per series: first, last, rows, gaps, missing candles, age of the last candle.

    Every stored series, unless --symbols/--timeframes narrow it. Exit codes: 0; 2 bad input;
    3 with --check when a series has gaps or is stale (one line on stderr names them).
    """  # fmt: skip
    from okx_collector.status_command import run_status

    code = run_status(settings_from(kwargs), as_json=as_json, check=check, html=html_file)
    sys.exit(code)


@cli.command("export-qlib")
@READING
@click.option(
    "--timeframes",
    help="Comma list of timeframes to export, each into the same directory [default 15m].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="qlib data directory to write or update.",
)
@click.option(
    "--timeframe",
    "timeframe",
    help="One timeframe to export (same as --timeframes with one value).",
)
@reports_errors
def export_qlib(out: Path, timeframe: str | None, **kwargs: Any) -> None:
    """Write or update a qlib data directory (calendars, instruments, features) from the store.

    Exports each of --timeframes into the one directory (qlib keeps one calendar per frequency),
    by default 15m; --symbols narrows the instruments (default: every stored one).
    """  # fmt: skip
    from okx_collector.export_command import run_export

    run_export(settings_from(kwargs), out=out, timeframe=timeframe)


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-data"), show_default=True,
              help="Folder for the demo's dataset and qlib export.")  # fmt: skip
@click.option("--live-seconds", type=float, default=30.0, show_default=True,
              help="How long to collect live.")  # fmt: skip
@click.option("--speed", type=float, default=60.0, show_default=True,
              help="Simulated seconds per real second.")  # fmt: skip
@reports_errors
def demo(data_dir: Path, live_seconds: float, speed: float) -> None:
    """Offline tour: simulator, backfill, live collection, qlib export, status."""
    from okx_collector.demo import run_demo

    if live_seconds <= 0 or speed <= 0:
        raise BadInput("--live-seconds and --speed must be greater than 0")
    configure_logging("INFO", "text")
    run_demo(data_dir, live_seconds=live_seconds, speed=speed)


def main() -> None:
    """Console entry point: click's usage errors become one line and exit code 2 too."""
    try:
        cli.main(standalone_mode=False, prog_name="okx-collector")
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except click.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
