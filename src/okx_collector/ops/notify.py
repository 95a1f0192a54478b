"""systemd's notify protocol (sd_notify(3)): one datagram per state change, no dependency.

Under `Type=notify` systemd passes a unix datagram socket in `NOTIFY_SOCKET` (a path, or an
abstract name written with a leading '@') and, with `WatchdogSec=`, the watchdog period in
`WATCHDOG_USEC`. The service sends `READY=1` once it does its job, `WATCHDOG=1` more often than the
period while it is sound, and `STOPPING=1` when it begins to stop. Sending never blocks and never
fails the job: a notification that cannot be delivered is logged once at debug level and dropped.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("okx_collector.ops")


class Notifier:
    """Sends notify messages to one socket address; `watchdog_s` is how often to ping (or None)."""

    def __init__(self, address: str, watchdog_s: float | None = None) -> None:
        # '@name' is Linux's abstract namespace: the address starts with a NUL byte instead.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not inherited (PEP 446)
        self._sock.setblocking(False)  # a full receive queue drops the message, never stalls us
        self._failed = False
        self._stopping = False  # STOPPING=1 was sent (it is sent once)

    @classmethod
    def from_env(cls, env: Mapping[str, str], pid: int | None = None) -> Notifier | None:
        """The notifier systemd asked for in `env`, or None when not started by systemd.

        The watchdog period is half of `WATCHDOG_USEC` (sd_watchdog_enabled(3)'s advice), and
        only when `WATCHDOG_PID` is unset or names this process (a child must not ping for us).
        """
        address = env.get("NOTIFY_SOCKET", "")
        if not address or not (address.startswith(("/", "@"))):
            return None
        watchdog_s = None
        usec = env.get("WATCHDOG_USEC", "")
        owner = env.get("WATCHDOG_PID", "")
        mine = not owner or owner == str(os.getpid() if pid is None else pid)
        if usec.isdigit() and int(usec) > 0 and mine:
            watchdog_s = int(usec) / 2_000_000
        return cls(address, watchdog_s)

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; whether it was delivered."""
        message = "\n".join(fields).encode()
        if self._sock.fileno() < 0:  # closed
            return False
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.debug("systemd notification not delivered (%s): %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        if self._stopping:
            return True
        self._stopping = True
        return self.send("STOPPING=1", "STATUS=stopping: flushing queued rows")

    def close(self) -> None:
        self._sock.close()
