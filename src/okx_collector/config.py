"""Settings: one frozen object built from flags, environment, a TOML file and defaults.

Precedence is flag > environment (`OKX_COLLECTOR_<NAME>`, plus the legacy `POLL_INTERVAL`) > config
file > default. Everything is validated here, so the rest of the program only sees good values.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from okx_collector.errors import BadInput
from okx_collector.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WEEK_MS,
    Timeframe,
    UnknownTimeframe,
)
from okx_collector.universe import split_entries

log = logging.getLogger(__name__)
DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT", "ADA/USDT", "DOT/USDT", "LINK/USDT")
OKX_REST_URL = "https://www.okx.com"
OKX_WS_URL = "wss://ws.okx.com:8443/ws/v5"
MODES = ("auto", "ws", "poll")
# What `--series` selects (funding stays under --funding): trade candles, mark-price candles of
# perpetuals, index candles of the indexes behind spot pairs and perpetuals, open interest of
# perpetuals at each bar close.
SERIES = ("trade", "mark", "index", "oi")
# Settings that no longer exist: a config file (or environment) naming one still works, with a
# one-line warning, so that upgrading does not break a deployment.
REMOVED_SETTINGS = {
    "cache_mb": "writes append to a journal now: no partition cache",
    "writer_process": "writes append to a journal now: no writer process",
}
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_MS = {"m": MINUTE_MS, "min": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know; immutable once built."""

    data_dir: Path = Path("data")
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[Timeframe, ...] = (Timeframe.parse("15m"),)
    funding: bool = True
    series: tuple[str, ...] = ("trade",)  # a subset of SERIES, in SERIES order
    since: str | None = None  # raw spec: resolved against the exchange's clock (see resolve_time)
    until: str | None = None
    rest_url: str = OKX_REST_URL
    ws_url: str = OKX_WS_URL
    mode: str = "auto"
    poll_interval: float = 60.0
    heartbeat: float = 60.0
    # `collect` serves Prometheus metrics and /health on this port (None: not at all), on
    # loopback unless told otherwise: the endpoint has no authentication.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = "text"
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown keys kept for error messages
    # The settings a flag, the environment or the config file set (the rest are defaults):
    # `status` and `export-qlib` read every stored series unless --symbols/--timeframes narrow it.
    given: frozenset[str] = frozenset()


def parse_time_spec(spec: str, now_ms: int, name: str = "--since") -> int:
    """Turn `30d`, `12h`, `90m`, `2w`, `2026-11-01` or `2026-11-01T06:00` (UTC) into int ms.

    Durations count back from `now_ms`, the exchange's current time.
    """
    text = spec.strip()
    match = _DURATION.match(text)
    if match:
        return now_ms - int(match.group(1)) * _UNIT_MS[match.group(2).lower()]
    if text.lower() == "now":
        return now_ms
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{name} {spec!r} is not a time: use an ISO date or time in UTC "
            "(2026-11-01, 2026-11-01T06:00) or a duration back from now (30d, 12h, 90m, 2w)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def resolve_range(settings: Settings, now_ms: int, default_since: str) -> tuple[int, int]:
    """The [since, until) range in ms, validated against the exchange's current time."""
    until = parse_time_spec(settings.until, now_ms, "--until") if settings.until else now_ms
    since = parse_time_spec(settings.since or default_since, now_ms, "--since")
    if since >= now_ms:
        raise BadInput(
            f"--since {_iso(since)} is in the future (exchange time is {_iso(now_ms)}); "
            "give an earlier time or a duration such as 30d"
        )
    if until > now_ms:
        until = now_ms  # candles after now do not exist yet; the range simply ends at now
    if since >= until:
        raise BadInput(f"--since {_iso(since)} is not before --until {_iso(until)}")
    return since, until


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _split_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        raise BadInput(f"{name} must be a comma-separated list, got {value!r}")
    items = [v for v in items if v]
    if not items:
        raise BadInput(f"{name} is empty: give at least one value")
    return tuple(dict.fromkeys(items))


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadInput(f"{name} must be true or false, got {value!r}")


def _number(value: Any, name: str, unit: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number of {unit}, got {value!r}") from None


def _positive(value: Any, name: str) -> float:
    number = _number(value, name, "seconds")
    if not number > 0:
        raise BadInput(f"{name} must be greater than 0, got {value!r}")
    return number


def _port(value: Any, name: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BadInput(f"{name} must be a TCP port number (0-65535), got {value!r}") from None
    if not 0 <= number <= 65535:
        raise BadInput(f"{name} must be a TCP port number (0-65535), got {value!r}")
    return number


def _host(value: Any, name: str) -> str:
    text = str(value).strip()
    if not text or any(c.isspace() for c in text):
        raise BadInput(f"{name} must be an address to listen on (127.0.0.1, ::1, 0.0.0.0)")
    return text


def _choice(value: Any, name: str, choices: tuple[str, ...], upper: bool = False) -> str:
    text = str(value).strip()
    text = text.upper() if upper else text.lower()
    if text not in choices:
        raise BadInput(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return text


def _url(value: Any, name: str, schemes: tuple[str, ...]) -> str:
    text = str(value).strip().rstrip("/")
    if not text.startswith(schemes):
        raise BadInput(f"{name} must start with {' or '.join(schemes)}, got {value!r}")
    return text


def _timeframes(value: Any, flag: str) -> tuple[Timeframe, ...]:
    try:
        return tuple(Timeframe.parse(t) for t in _split_list(value, flag))
    except UnknownTimeframe as exc:
        raise BadInput(str(exc)) from None


def _series(value: Any, flag: str) -> tuple[str, ...]:
    """`trade,mark,index,oi` (any non-empty subset, any order, case-insensitive)."""
    names = [v.lower() for v in _split_list(value, flag)]
    unknown = [v for v in names if v not in SERIES]
    if unknown:
        raise BadInput(
            f"{flag}: unknown series {', '.join(repr(v) for v in unknown)}; "
            f"valid values: {', '.join(SERIES)} (a comma list; funding is --funding)"
        )
    return tuple(s for s in SERIES if s in names)


def _time_spec(value: Any, flag: str) -> str | None:
    if value in (None, ""):
        return None
    parse_time_spec(str(value), 0, flag)  # fail on bad syntax now, before any network call
    return str(value)


_CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "metrics_port": _port,
    "metrics_host": _host,
}


def _convert(name: str, value: Any) -> Any:
    flag = "--" + name.replace("_", "-")
    if name == "data_dir":
        return Path(str(value)).expanduser()
    if name == "symbols":
        symbols = tuple(s.upper() for s in _split_list(value, flag))
        split_entries(symbols)  # a malformed selector fails now, before any network call
        return symbols
    if name == "timeframes":
        return _timeframes(value, flag)
    if name == "funding":
        return _bool(value, flag)
    if name == "series":
        return _series(value, flag)
    if name in ("since", "until"):
        return _time_spec(value, flag)
    if name == "rest_url":
        return _url(value, flag, ("http://", "https://"))
    if name == "ws_url":
        return _url(value, flag, ("ws://", "wss://"))
    if name == "mode":
        return _choice(value, flag, MODES)
    if name in ("poll_interval", "heartbeat"):
        return _positive(value, flag)
    if name in _CONVERTERS:
        return _CONVERTERS[name](value, flag)
    if name == "log_level":
        return _choice(value, flag, LOG_LEVELS, upper=True)
    if name == "log_format":
        return _choice(value, flag, LOG_FORMATS)
    raise BadInput(f"unknown setting {name!r}")  # pragma: no cover - names come from the dataclass


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name not in ("extra", "given"))


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file; keys are setting names (`data_dir` or `data-dir`)."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise BadInput(f"config file {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"config file {path} is not valid TOML: {exc}") from None
    table = raw.get("okx-collector", raw.get("okx_collector", raw))
    values = {str(k).replace("-", "_"): v for k, v in table.items()}
    for name in sorted(set(values) & set(REMOVED_SETTINGS)):
        del values[name]
        log.warning("config file %s: %s is no longer used (%s); ignored", path, name,
                    REMOVED_SETTINGS[name])  # fmt: skip
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        named = ", ".join(_with_suggestion(key) for key in unknown)
        raise BadInput(
            f"config file {path}: unknown setting(s) {named}; known: {', '.join(SETTING_NAMES)}"
        )
    return values


def _with_suggestion(key: str) -> str:
    """`simbols (did you mean symbols?)`: most unknown keys are typos of a known one."""
    close = difflib.get_close_matches(key, SETTING_NAMES, n=1, cutoff=0.6)
    return f"{key} (did you mean {close[0]}?)" if close else key


def environment_values(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings from `OKX_COLLECTOR_<NAME>` variables (and `POLL_INTERVAL`)."""
    values: dict[str, Any] = {}
    if env.get("POLL_INTERVAL"):
        values["poll_interval"] = env["POLL_INTERVAL"]
    for name in SETTING_NAMES:
        value = env.get("OKX_COLLECTOR_" + name.upper())
        if value not in (None, ""):
            values[name] = value
    for name, why in REMOVED_SETTINGS.items():
        if env.get("OKX_COLLECTOR_" + name.upper()):
            log.warning("OKX_COLLECTOR_%s is no longer used (%s); ignored", name.upper(), why)
    return values


def build_settings(
    flags: Mapping[str, Any],
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    used: Collection[str] | None = None,
) -> Settings:
    """Merge flag > environment > config file > default and validate every value.

    `flags` holds only the options the user actually gave (None values are ignored). `used`
    (default: all) names the settings the command reads: environment and config values of the
    others are ignored, so that `POLL_INTERVAL=abc okx-collector status` (or a config file
    shared by every command) cannot fail a command that never polls.
    """
    environ = os.environ if env is None else env
    if config_file is None and environ.get("OKX_COLLECTOR_CONFIG"):
        config_file = Path(environ["OKX_COLLECTOR_CONFIG"])
    wanted = set(SETTING_NAMES if used is None else used)
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(read_config_file(config_file))
    merged.update(environment_values(environ))
    merged = {k: v for k, v in merged.items() if k in wanted}
    merged.update({k: v for k, v in flags.items() if v is not None and k in SETTING_NAMES})
    settings = Settings(
        **{name: _convert(name, value) for name, value in merged.items()},
        given=frozenset(merged),
    )
    if settings.since and settings.until:
        # Checked again against the exchange's clock later; this catches `--since 2d --until 3d`
        # before any network call.
        local_now = int(time.time() * 1000)
        since = parse_time_spec(settings.since, local_now, "--since")
        until = parse_time_spec(settings.until, local_now, "--until")
        if since >= until:
            raise BadInput(f"--since {_iso(since)} is not before --until {_iso(until)}")
    return settings
