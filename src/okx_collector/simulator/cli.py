"""`okx-collector simulate`: run the OKX simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime

import click

from okx_collector.simulator.server import Simulator


class _UtcTime(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """An ISO date or date-time (UTC unless it says otherwise), or epoch milliseconds."""

    name = "ISO_TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not an ISO date/time such as 2026-01-31 or "
                "2026-01-31T12:00:00Z, nor epoch milliseconds",
                param,
                ctx,
            )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)


def _snippet(sim: Simulator) -> str:
    return "\n".join(
        [
            "import ccxt.pro  # ccxt.async_support and ccxt work the same way",
            f'ex = ccxt.pro.okx({{"urls": {{"api": {{"rest": "{sim.rest_url}", '
            f'"ws": "{sim.ws_url}"}}}}}})',
            "candles = await ex.fetch_ohlcv('BTC/USDT', '15m', limit=300)",
        ]
    )


async def _serve(sim: Simulator) -> None:
    await sim.start()
    click.echo(f"REST {sim.rest_url}")
    click.echo(f"WS   {sim.ws_url}")
    click.echo(_snippet(sim))
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt instead
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="TCP port; 0 picks any free port.",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Market seed: one seed, one history."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second.",
)
@click.option(
    "--start",
    "start_ms",
    type=_UtcTime(),
    default=None,
    help="Simulated time at launch (ISO date/time, UTC) [default: now].",
)
@click.option(
    "--rate-limit-scale",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Multiplies OKX's documented rate limits; 0 = no limits.",
)
@click.option(
    "--extra-instruments",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    help="Synthetic spot/swap pairs beyond the real names.",
)
@click.option(
    "--push-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Real seconds between in-progress candle pushes per series [default: 0.5, OKX's "
    "cadence, shortened at high --speed so that pushes stay at most 10 simulated s apart].",
)
def simulate(
    host: str,
    port: int,
    seed: int,
    speed: float,
    start_ms: int | None,
    rate_limit_scale: float,
    extra_instruments: int,
    push_interval: float | None,
) -> None:
    """Run the OKX simulator (REST + websockets) until SIGINT/SIGTERM; print its URLs."""
    sim = Simulator(
        seed=seed,
        speed=speed,
        start_ms=start_ms,
        rate_limit_scale=rate_limit_scale,
        extra_instruments=extra_instruments,
        host=host,
        port=port,
        # At --speed 60, OKX's 0.5 s would be 30 simulated s between pushes: as long as a
        # collector's stale limit for 1m candles. Keep pushes frequent in simulated time too.
        push_interval=push_interval if push_interval is not None else min(0.5, 10.0 / speed),
    )
    try:
        asyncio.run(_serve(sim))
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        pass


if __name__ == "__main__":
    simulate()
