"""Admin routes for the bad-day switches (`POST /_sim/delist` ...; see server.py's docstring).

Each takes a JSON object and answers JSON; a refused request is HTTP 400 `{"error": reason}` and
changes nothing. They are outside /api/v5, so never rate-limited, faulted or in maintenance.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from okx_collector.simulator.server import Simulator

_Action = Callable[[dict[str, Any]], dict[str, Any]]


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(payload, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def _route(action: _Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return _json(action(body))
        except (ValueError, KeyError, TypeError) as e:
            return _json({"error": str(e)}, 400)

    return handle


def _inst_id(body: dict[str, Any]) -> str:
    inst_id = body.get("instId")
    if not isinstance(inst_id, str) or not inst_id:
        raise ValueError('expected {"instId": "..."}')
    return inst_id


def baddays_routes(sim: Simulator) -> list[web.RouteDef]:
    """The routes, acting on `sim`."""

    def delist(body: dict[str, Any]) -> dict[str, Any]:
        inst_id = _inst_id(body)
        return {"instId": inst_id, "delisted_ms": sim.delist(inst_id)}

    def list_(body: dict[str, Any]) -> dict[str, Any]:
        inst_id = _inst_id(body)
        return {"instId": inst_id, "listTime": sim.list_instrument(inst_id)}

    def maintenance(body: dict[str, Any]) -> dict[str, Any]:
        on, notice_s = body.get("on"), body.get("notice_s", 0)
        if not isinstance(on, bool):
            raise ValueError('expected {"on": true|false, "notice_s": seconds}')
        if isinstance(notice_s, bool) or not isinstance(notice_s, int | float):
            raise ValueError(f"notice_s must be a number, got {notice_s!r}")
        if on:
            sim.begin_maintenance(float(notice_s))
        else:
            sim.end_maintenance()
        return {"maintenance": sim.maintenance.on, "pending": sim.maintenance.pending}

    def quiet(body: dict[str, Any]) -> dict[str, Any]:
        flag = body.get("quiet", True)
        if not isinstance(flag, bool):
            raise ValueError(f"quiet must be true or false, got {flag!r}")
        sim.set_quiet(_inst_id(body), flag)
        return {"quiet": sorted(sim.market.quiet)}

    def refuse_derived(body: dict[str, Any]) -> dict[str, Any]:
        channel, flag = body.get("channel"), body.get("refused", True)
        if not isinstance(channel, str) or not isinstance(flag, bool):
            raise ValueError('expected {"channel": "...", "instId": "...", "refused": true}')
        sim.refuse_derived(channel, _inst_id(body), flag)
        return {"refused": sorted([c, i] for c, i in sim.derived.refused)}

    def funding_interval(body: dict[str, Any]) -> dict[str, Any]:
        inst_id, hours, from_ms = _inst_id(body), body.get("hours"), body.get("from_ms")
        if from_ms is not None and (isinstance(from_ms, bool) or not isinstance(from_ms, int)):
            raise ValueError(f"from_ms must be an integer or null, got {from_ms!r}")
        start = sim.set_funding_interval(inst_id, hours, from_ms)  # type: ignore[arg-type]
        return {"instId": inst_id, "hours": hours, "from_ms": start}

    return [
        web.post("/_sim/delist", _route(delist)),
        web.post("/_sim/list", _route(list_)),
        web.post("/_sim/maintenance", _route(maintenance)),
        web.post("/_sim/quiet", _route(quiet)),
        web.post("/_sim/refuse-derived", _route(refuse_derived)),
        web.post("/_sim/funding-interval", _route(funding_interval)),
    ]
