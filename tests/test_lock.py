"""The data dir's lock names the process holding it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from okx_collector.errors import EnvironmentProblem
from okx_collector.session import LOCK_NAME, data_dir_lock


def test_the_lock_file_holds_the_pid_and_the_refusal_names_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with data_dir_lock(data):
        assert (data / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        refused = rf"okx-collector \(pid {os.getpid()}\) is"
        with pytest.raises(EnvironmentProblem, match=refused), data_dir_lock(data):
            pass
        result = subprocess.run(
            [sys.executable, "-m", "okx_collector", "backfill", "--data-dir", str(data),
             "--rest-url", "http://127.0.0.1:9"],
            capture_output=True, text=True, timeout=60, env=os.environ.copy(),
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"okx-collector: error: another okx-collector (pid {os.getpid()}) is already writing to "
        f"{data}; stop it first or use another --data-dir\n"
    )
    with data_dir_lock(data):  # released, and a stale PID in the file means nothing
        pass


def test_a_lock_file_without_a_pid_still_refuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with data_dir_lock(data):
        (data / LOCK_NAME).write_text("")  # as an older version left it
        refused = "another okx-collector is already writing"
        with pytest.raises(EnvironmentProblem, match=refused), data_dir_lock(data):
            pass
