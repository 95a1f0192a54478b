"""The simulator in a child process, for the benchmarks (so that it never shares our GIL)."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit


class Simulator:
    """`okx-collector simulate` in a child process; its REST and WS URLs from its stdout."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "okx_collector", "simulate", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.rest_url = self.ws_url = ""
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while not (self.rest_url and self.ws_url):
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator did not print its URLs")
            if line.startswith("REST "):
                self.rest_url = line.split()[1]
            elif line.startswith("WS "):
                self.ws_url = line.split()[1]
        url = urlsplit(self.rest_url)
        self._conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, route: str) -> dict[str, Any]:
        """GET an admin route (`/_sim/stats`, `/_sim/clock`) as JSON."""
        try:
            self._conn.request("GET", route)
            response = self._conn.getresponse()
        except (OSError, http.client.HTTPException):
            self._conn.close()  # reconnect once
            self._conn.request("GET", route)
            response = self._conn.getresponse()
        data: dict[str, Any] = json.loads(response.read())
        return data

    def stats(self) -> dict[str, Any]:
        return self.get("/_sim/stats")

    def now_ms(self) -> int:
        return int(self.get("/_sim/clock")["now_ms"])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit code."""
        with contextlib.suppress(Exception):
            self._conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
