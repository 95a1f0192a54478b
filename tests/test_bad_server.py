"""A --rest-url that is not OKX (a web server's HTML, an error page, foreign JSON): one line that
names the URL and shows what came back, exit 1, after the start-up's few tries."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import build_settings
from okx_collector.errors import EnvironmentProblem, NotOkxAnswer
from okx_collector.okx_answers import classify
from okx_collector.okx_ws import NotOkx, foreign_answer
from tests.conftest import fast_delays
from tests.crash_helpers import LOG_LINE, Cli

NGINX = (
    "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\n"
    + "    body { width: 35em; margin: 0 auto; }\n" * 5
    + "</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n"
    + "<p>If you see this page, the nginx web server is successfully installed.</p>\n" * 4
    + "</body>\n</html>\n"
)
ANSWERS = {
    "html-200": (200, "text/html", NGINX, 'HTTP 200, text/html: "<!DOCTYPE html> <html> <head>'),
    "html-500": (500, "text/html", NGINX, 'HTTP 500, text/html: "<!DOCTYPE html> <html> <head>'),
    "wrong-json": (
        200, "application/json", '{"status": "ok",\n  "items": [1, 2, 3]}',
        'HTTP 200, application/json: "{"status": "ok", "items": [1, 2, 3]}"',
    ),
}  # fmt: skip


def app_for(kind: str) -> web.Application:
    status, content_type, body, _ = ANSWERS[kind]

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.fixture(params=list(ANSWERS))
async def bad_url(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """(kind, URL) of a server in this event loop that answers every request the same way."""
    runner = web.AppRunner(app_for(request.param))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield request.param, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_foreign_answer_is_one_line_naming_the_url(
    bad_url: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = bad_url
    settings = build_settings(
        {"data_dir": str(tmp_path / "data"), "rest_url": url, "symbols": "BTC/USDT"}, env={}
    )
    with pytest.raises(EnvironmentProblem) as caught:
        await run_backfill_async(settings, progress=SilentProgress(), delays=fast_delays)
    message = str(caught.value)
    assert "\n" not in message and len(message) <= 200, message
    assert message.startswith(f"{url} does not answer like OKX's API ({ANSWERS[kind][3]}"), message
    assert message.endswith("); check --rest-url"), message


def test_foreign_answers_are_described_and_retryable() -> None:
    assert foreign_answer(200, {}, '{"code":"0","data":[]}', {"code": "0", "data": []}) is None
    assert foreign_answer(429, {}, "", {"code": "50011", "msg": "Too Many Requests"}) is None
    long = "x" * 500
    detail = foreign_answer(502, {"content-type": "text/plain; charset=utf-8"}, long, None)
    assert detail == f'HTTP 502, text/plain: "{"x" * 64}..."'
    assert foreign_answer(200, {}, "  \n ", None) == "HTTP 200, no content type, empty body"
    # Raised inside the ccxt call, classified as retryable (a proxy's error page may pass).

    assert isinstance(classify(NotOkx("http://x/api", "HTTP 502, text/html: ...")), NotOkxAnswer)


class ServerThread:
    """An aiohttp app served from a thread (for the CLI in a subprocess)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.SockSite(self.runner, self.sock).start())
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def html_server() -> Iterator[str]:
    with ServerThread(app_for("html-200")) as server:
        yield f"http://127.0.0.1:{server.port}/"


def test_backfill_against_a_web_server_exits_1_with_one_line(
    html_server: str, tmp_path: Path
) -> None:
    args = ["backfill", "--data-dir", str(tmp_path / "data"), "--rest-url", html_server,
            "--symbols", "BTC/USDT", "--since", "1d"]  # fmt: skip
    with Cli(args, tmp_path / "backfill.err") as run:
        code = run.wait(20)
    err = run.stderr()
    assert code == 1, err
    assert "Traceback" not in err and "never retrieved" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1 and len(lines[0]) <= 200, err
    assert lines[0].startswith(
        f"okx-collector: error: {html_server.rstrip('/')} does not answer like OKX's API "
        '(HTTP 200, text/html: "<!DOCTYPE html> <html> <head> <title>Welcome to nginx!'
    ), lines[0]
    assert lines[0].endswith("); check --rest-url"), lines[0]
