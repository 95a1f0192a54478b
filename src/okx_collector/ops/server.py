"""The HTTP endpoint of a collect run: `/metrics` (Prometheus text) and `/health` (JSON).

An aiohttp server on the collect event loop. Each request takes a snapshot of the collector on the
loop (cheap: a tuple per series); the exposition, which reads /proc, is rendered in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from okx_collector.errors import EnvironmentProblem
from okx_collector.ops.health import Snapshot, health
from okx_collector.ops.metrics import Metrics

log = logging.getLogger("okx_collector.ops")


class OpsServer:
    """Serves `metrics` and the health of `snapshot()` (None before the collector is live)."""

    def __init__(self, metrics: Metrics, snapshot: Callable[[], Snapshot | None]) -> None:
        self._metrics = metrics
        self._snapshot = snapshot
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/health", self._serve_health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.port: int | None = None  # the bound port, once started

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0: a free one); a clear error if the port is taken."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise EnvironmentProblem(
                f"--metrics-port {port}: cannot listen on {host}:{port} "
                f"({exc.strerror or exc}); choose another port or --metrics-host"
            ) from None
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        log.info("serving metrics on http://%s:%d/metrics and /health", host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        self._metrics.snapshot = self._snapshot()
        body = await asyncio.to_thread(self._metrics.render)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _serve_health(self, request: web.Request) -> web.Response:
        status, body = health(self._snapshot())
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")
