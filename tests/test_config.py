"""Settings: precedence, validation, and time specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from okx_collector.config import build_settings, parse_time_spec, resolve_range
from okx_collector.errors import BadInput
from okx_collector.timeframes import DAY_MS, HOUR_MS

NOW = 1_790_000_000_000


def test_defaults() -> None:
    s = build_settings({}, env={})
    assert s.symbols == ("BTC/USDT", "ETH/USDT", "ADA/USDT", "DOT/USDT", "LINK/USDT")
    assert [t.name for t in s.timeframes] == ["15m"]
    assert s.funding is True and s.mode == "auto" and s.poll_interval == 60.0
    assert s.series == ("trade",)


def test_series_from_flag_env_and_file(tmp_path: Path) -> None:
    assert build_settings({"series": "OI, mark,trade,mark"}, env={}).series == (
        "trade",
        "mark",
        "oi",
    )
    assert build_settings({}, env={"OKX_COLLECTOR_SERIES": "index"}).series == ("index",)
    cfg = tmp_path / "c.toml"
    cfg.write_text('series = ["mark", "index"]\n')
    assert build_settings({}, config_file=cfg, env={}).series == ("mark", "index")


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('symbols = "ETH/USDT"\ntimeframes = ["1m", "1h"]\nheartbeat = 5\nmode = "ws"\n')
    env = {"OKX_COLLECTOR_MODE": "poll", "POLL_INTERVAL": "7"}
    s = build_settings({"heartbeat": 3.0, "symbols": None}, config_file=cfg, env=env)
    assert s.symbols == ("ETH/USDT",)  # file (flag was not given)
    assert [t.name for t in s.timeframes] == ["1m", "1h"]
    assert s.mode == "poll"  # env beats file
    assert s.heartbeat == 3.0  # flag beats file
    assert s.poll_interval == 7.0  # POLL_INTERVAL honoured
    env2 = {"POLL_INTERVAL": "7", "OKX_COLLECTOR_POLL_INTERVAL": "9"}
    assert build_settings({}, env=env2).poll_interval == 9.0


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"timeframes": "15x"}, "valid timeframes: 1m"),
        ({"timeframes": "1M"}, "unknown timeframe"),
        ({"mode": "fast"}, "--mode must be one of"),
        ({"poll_interval": "-1"}, "greater than 0"),
        ({"rest_url": "ftp://x"}, "http://"),
        ({"symbols": " , "}, "is empty"),
        ({"series": "trade,funding"}, "unknown series 'funding'; valid values: trade, mark"),
        ({"series": ","}, "--series is empty"),
    ],
)
def test_bad_values_are_bad_input(flags: dict[str, str], fragment: str) -> None:
    with pytest.raises(BadInput, match=fragment.replace("(", r"\(")):
        build_settings(flags, env={})


def test_removed_settings_in_a_config_file_are_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """cache_mb and writer_process are gone (writes append to a journal): an existing config
    file or environment naming them still works, with one warning line each."""
    config = tmp_path / "okx.toml"
    config.write_text('cache-mb = 16\nwriter_process = "on"\nmode = "poll"\n')
    env = {"OKX_COLLECTOR_CACHE_MB": "0"}
    with caplog.at_level("WARNING"):
        settings = build_settings({}, config_file=config, env=env)
    assert settings.mode == "poll"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and all("no longer used" in w and "\n" not in w for w in warned)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        build_settings({}, config_file=tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("symbols = [")
    with pytest.raises(BadInput, match="not valid TOML"):
        build_settings({}, config_file=broken, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("simbols = 'BTC/USDT'")
    with pytest.raises(BadInput, match="unknown setting"):
        build_settings({}, config_file=unknown, env={})


def test_time_specs() -> None:
    assert parse_time_spec("30d", NOW) == NOW - 30 * DAY_MS
    assert parse_time_spec("12h", NOW) == NOW - 12 * HOUR_MS
    assert parse_time_spec("2026-01-01", NOW) == 1_767_225_600_000
    assert parse_time_spec("2026-01-01T06:00", NOW) == 1_767_225_600_000 + 6 * HOUR_MS
    assert parse_time_spec("2026-01-01T08:00+02:00", NOW) == 1_767_225_600_000 + 6 * HOUR_MS
    with pytest.raises(BadInput, match="is not a time"):
        parse_time_spec("yesterday", NOW)


def test_resolve_range() -> None:
    s = build_settings({"since": "2d"}, env={})
    assert resolve_range(s, NOW, "30d") == (NOW - 2 * DAY_MS, NOW)
    with pytest.raises(BadInput, match="in the future"):
        resolve_range(build_settings({"since": "2099-01-01"}, env={}), NOW, "30d")
    with pytest.raises(BadInput, match="not before"):
        resolve_range(build_settings({"since": "1d", "until": "2d"}, env={}), NOW, "30d")


def test_an_unknown_config_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('simbols = "BTC/USDT"\npoll-intervall = 5\nzzz = 1\n')
    with pytest.raises(BadInput) as caught:
        build_settings({}, config_file=cfg, env={})
    message = str(caught.value)
    assert "poll_intervall (did you mean poll_interval?)" in message
    assert "simbols (did you mean symbols?)" in message
    assert "zzz;" in message  # nothing close: named as it is


def test_settings_a_command_does_not_read_are_ignored_from_env_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('mode = "fast"\ntimeframes = "1m"\n')
    env = {"POLL_INTERVAL": "abc", "OKX_COLLECTOR_SYMBOLS": "ETH/USDT"}
    s = build_settings({}, config_file=cfg, env=env, used={"symbols", "timeframes", "data_dir"})
    assert s.mode == "auto" and s.poll_interval == 60.0  # not read: not validated either
    assert s.symbols == ("ETH/USDT",) and s.given == {"symbols", "timeframes"}
    with pytest.raises(BadInput, match="--poll-interval must be a number"):
        build_settings({}, env=env)
