"""The sandbox's HTTP face: a Starlette app over a ``World``.

``/api/v3/...`` follows ``shared/spec`` exactly. ``/_sandbox/...`` is the
control surface (faults, life events, inspection); the real API never has it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.sandbox import data
from connector.sandbox.faults import ApiFault
from connector.sandbox.world import World


class _Json(JSONResponse):
    # ASCII-escaped: a lone surrogate (the dirty-data knobs) travels as "\ud83d", as a
    # real server's JSON would carry it, instead of failing to encode.
    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def _ok(payload: Any, meta: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "data": payload}
    if meta is not None:
        body["meta"] = meta
    return _Json(body, status_code=status)


def _error(fault: ApiFault) -> JSONResponse:
    err: dict[str, Any] = {"kode": fault.kode, "pesan": fault.pesan}
    if fault.rincian is not None:
        err["rincian"] = fault.rincian
    return JSONResponse(
        {"status": "error", "error": err}, status_code=fault.status, headers=fault.headers
    )


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# An /api/v3 handler: the request and the caller's instansi (0 before authorization).
_Handler = Callable[[Request, int], Awaitable[Response]]


def create_app(world: World) -> Starlette:
    routes = [
        *_auth_routes(world),
        *_laporan_routes(world),
        *_reference_routes(world),
        *_control_routes(world),
    ]
    app = Starlette(routes=routes)
    app.state.world = world
    return app


async def _api(world: World, request: Request, handler: _Handler, *, auth: bool = True) -> Response:
    """One ``/api/v3`` call: the latency knob, the world's request faults, the bearer token
    (the caller's instansi), then the handler; an ``ApiFault`` becomes LAPOR!'s error body."""
    if world.faults.latency_ms:
        world.fired["latency_ms"] += 1
        await asyncio.sleep(world.faults.latency_ms / 1000)
    try:
        world.before_request()
        instansi = world.authorize(request.headers.get("Authorization")).instansi if auth else 0
        return await handler(request, instansi)
    except ApiFault as fault:
        return _error(fault)


def _tid(request: Request) -> int:
    raw = request.path_params["tracking_id"]
    if not raw.isdigit() or int(raw) < 1:
        raise ApiFault(404, "laporan_tidak_ditemukan", "Laporan tidak ditemukan.")
    return int(raw)


def _auth_routes(world: World) -> list[Route]:
    async def ping(request: Request) -> Response:
        async def h(_: Request, __: int) -> Response:
            return _ok({"waktu_server": world.summary_time()})

        return await _api(world, request, h, auth=False)

    async def token(request: Request) -> Response:
        async def h(req: Request, _: int) -> Response:
            try:
                body = await req.json()
            except ValueError:
                body = None
            return _ok(world.issue_token(body))

        return await _api(world, request, h, auth=False)

    return [
        Route("/api/v3/ping", ping),
        Route("/api/v3/auth/token", token, methods=["POST"]),
    ]


def _laporan_routes(world: World) -> list[Route]:
    async def feed(request: Request) -> Response:
        async def h(req: Request, instansi: int) -> Response:
            items, meta = world.feed(instansi, dict(req.query_params))
            return _ok(items, meta)

        return await _api(world, request, h)

    async def detail(request: Request) -> Response:
        async def h(req: Request, instansi: int) -> Response:
            record = world.get(_tid(req), instansi)
            fault = world.detail_fault(record["tracking_id"])
            if fault == "not_found":
                raise ApiFault(404, "laporan_tidak_ditemukan", "Laporan tidak ditemukan.")
            answer = _ok(world.detail(record, _base_url(req)))
            if fault == "truncated":  # cut off mid-JSON, as a dropped proxy connection does
                return Response(answer.body[: len(answer.body) // 2], media_type="application/json")
            return answer

        return await _api(world, request, h)

    async def follow_up(request: Request) -> Response:
        async def h(req: Request, instansi: int) -> Response:
            try:
                body = await req.json()
            except ValueError:
                body = None
            status, result = world.post_follow_up(
                _tid(req), instansi, req.headers.get("Idempotency-Key"), body
            )
            if (
                status == 201
                and world.faults.drop_post_rate
                and world.fault_rng.random() < world.faults.drop_post_rate
            ):
                # Committed, but the answer is "lost" on the way back.
                world.fired["drop_post_rate"] += 1
                world.drop_answer()
                raise ApiFault(504, "kesalahan_server", "Gateway timeout.")
            return _ok(result, status=status)

        return await _api(world, request, h)

    async def lampiran(request: Request) -> Response:
        async def h(req: Request, _: int) -> Response:
            body, mime = world.attachment(req.path_params["id"])
            return Response(body, media_type=mime)

        return await _api(world, request, h)

    return [
        Route("/api/v3/laporan", feed),
        Route("/api/v3/laporan/{tracking_id}", detail),
        Route("/api/v3/laporan/{tracking_id}/tindak-lanjut", follow_up, methods=["POST"]),
        Route("/api/v3/lampiran/{id}", lampiran),
    ]


def _reference_routes(world: World) -> list[Route]:
    async def units(request: Request) -> Response:
        async def h(_: Request, __: int) -> Response:
            return _ok(
                [
                    world._extra(
                        {
                            "id": u[0],
                            "nama": u[1],
                            "instansi_id": data.INSTANSI,
                            "induk_id": u[2],
                            "aktif": u[3],
                        }
                    )
                    for u in data.UNITS
                ]
            )

        return await _api(world, request, h)

    async def kategori(request: Request) -> Response:
        async def h(_: Request, __: int) -> Response:
            return _ok(
                [
                    world._extra({"id": c[0], "nama": c[1], "induk_id": c[2]})
                    for c in data.CATEGORIES
                ]
            )

        return await _api(world, request, h)

    return [
        Route("/api/v3/unit-kerja", units),
        Route("/api/v3/kategori", kategori),
    ]


def _control_routes(world: World) -> list[Route]:
    """``/_sandbox/...``: faults, life events, inspection; the real API never has it."""

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            try:
                world.set_faults(await request.json())
            except (ValueError, TypeError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(vars(world.faults))

    async def event(request: Request) -> Response:
        try:
            body = await request.json()
            tid = world.event(body["type"], body.get("tracking_id"), body.get("unit_id"))
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"tracking_id": tid})

    async def tick(request: Request) -> Response:
        n = int(request.query_params.get("n", "1"))
        return JSONResponse({"events": [e for _ in range(n) for e in world.tick()]})

    async def add(request: Request) -> Response:
        n = int(request.query_params.get("n", "1"))
        return JSONResponse({"tracking_ids": world.add_complaints(n)})

    async def inspect(request: Request) -> Response:
        try:
            return JSONResponse(world.inspect(int(request.path_params["tracking_id"])))
        except (KeyError, ValueError):
            return JSONResponse({"error": "unknown"}, status_code=404)

    async def stats(_: Request) -> Response:
        return JSONResponse(
            {
                "complaints": len(world.records),
                "requests": world.requests,
                "posts_created": world.posts_created,
                "posts_replayed": world.posts_replayed,
                "keys_forgotten": world.keys_forgotten,
                "tracking_ids": sorted(world.records),
                "visible_ids": world.visible_ids(),
            }
        )

    async def openapi(_: Request) -> Response:
        text = resources.files("connector.sandbox").joinpath("openapi.yaml").read_text("utf-8")
        return Response(text, media_type="application/yaml")

    return [
        Route("/_sandbox/faults", faults, methods=["GET", "PUT"]),
        Route("/_sandbox/event", event, methods=["POST"]),
        Route("/_sandbox/tick", tick, methods=["POST"]),
        Route("/_sandbox/complaints", add, methods=["POST"]),
        Route("/_sandbox/laporan/{tracking_id}", inspect),
        Route("/_sandbox/stats", stats),
        Route("/_sandbox/openapi.yaml", openapi),
    ]


async def run_generator(world: World, interval_s: float, stop: asyncio.Event) -> None:
    """Add life to the world every ``interval_s`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            world.tick()
