"""The sandbox's OpenAPI document, checked against the running sandbox."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from connector.sandbox import World, create_app

pytestmark = pytest.mark.anyio
DOC = yaml.safe_load(resources.files("connector.sandbox").joinpath("openapi.yaml").read_text())
SHARED = Path(__file__).resolve().parents[2] / "shared" / "spec" / "lapor-api-v3.yaml"


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # "$ref": "#/components/..." points into the whole document, registered as "doc".
    registry = Registry().with_resource(
        "doc", Resource.from_contents(DOC, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(_rebase(schema), registry=registry)


def _rebase(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: ("doc" + v if k == "$ref" and v.startswith("#") else _rebase(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_rebase(v) for v in obj]
    return obj


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    resp = DOC["paths"][path][method]["responses"][str(status)]
    if "$ref" in resp:
        resp = DOC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    content = resp.get("content", {})
    media = content.get("application/json")
    return media["schema"] if media else None


@pytest.mark.skipif(not SHARED.exists(), reason="shared/spec not beside the checkout")
def test_api_part_is_the_shared_contract() -> None:
    shared = yaml.safe_load(SHARED.read_text())
    assert {p: v for p, v in DOC["paths"].items() if p.startswith("/api/")} == shared["paths"]
    for name, schema in shared["components"]["schemas"].items():
        assert DOC["components"]["schemas"][name] == schema


async def test_every_documented_operation_answers_as_documented(fake_time: Any) -> None:
    world = World(seed=9, complaints=30, clock=fake_time)
    world.set_faults({"malformed_rate": 0.0, "rate_limit_per_minute": 0})
    tid = next(
        t
        for t, r in world.records.items()
        if r["status"] == "terdisposisi" and world.visible(t) and r["lampiran"]
    )
    unit = world.records[tid]["disposisi"][0]["unit_id"]
    checked: set[tuple[str, str]] = set()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world)), base_url="http://127.0.0.1:8765"
    ) as c:
        tok = (
            await c.post(
                "/api/v3/auth/token",
                json={"client_id": "mahulu-demo", "client_secret": "rahasia-demo-6411"},
            )
        ).json()
        auth = {"Authorization": "Bearer " + tok["data"]["access_token"]}
        att = world.records[tid]["lampiran"][0]["id"]
        calls: list[tuple[str, str, str, dict[str, Any]]] = [
            ("get", "/api/v3/ping", "/api/v3/ping", {}),
            (
                "post",
                "/api/v3/auth/token",
                "/api/v3/auth/token",
                {"json": {"client_id": "mahulu-demo", "client_secret": "rahasia-demo-6411"}},
            ),
            (
                "post",
                "/api/v3/auth/token",
                "/api/v3/auth/token",
                {"json": {"client_id": "a", "client_secret": "b"}},
            ),
            ("get", "/api/v3/laporan", "/api/v3/laporan", {"params": {"batas": 7}}),
            ("get", "/api/v3/laporan", "/api/v3/laporan", {"params": {"batas": 0}}),
            ("get", "/api/v3/laporan/{tracking_id}", f"/api/v3/laporan/{tid}", {}),
            ("get", "/api/v3/laporan/{tracking_id}", "/api/v3/laporan/5", {}),
            (
                "post",
                "/api/v3/laporan/{tracking_id}/tindak-lanjut",
                f"/api/v3/laporan/{tid}/tindak-lanjut",
                {
                    "json": {"unit_id": unit, "status": "diproses", "isi": "ok"},
                    "headers": {"Idempotency-Key": "oa-1"},
                },
            ),
            (
                "post",
                "/api/v3/laporan/{tracking_id}/tindak-lanjut",
                f"/api/v3/laporan/{tid}/tindak-lanjut",
                {
                    "json": {"unit_id": unit, "status": "diproses", "isi": "ok"},
                    "headers": {"Idempotency-Key": "oa-1"},
                },
            ),
            (
                "post",
                "/api/v3/laporan/{tracking_id}/tindak-lanjut",
                f"/api/v3/laporan/{tid}/tindak-lanjut",
                {"json": {"isi": ""}, "headers": {"Idempotency-Key": "oa-2"}},
            ),
            ("get", "/api/v3/lampiran/{id}", f"/api/v3/lampiran/{att}", {}),
            ("get", "/api/v3/unit-kerja", "/api/v3/unit-kerja", {}),
            ("get", "/api/v3/kategori", "/api/v3/kategori", {}),
            ("get", "/_sandbox/faults", "/_sandbox/faults", {}),
            ("put", "/_sandbox/faults", "/_sandbox/faults", {"json": {"latency_ms": 0}}),
            ("post", "/_sandbox/event", "/_sandbox/event", {"json": {"type": "new"}}),
            ("post", "/_sandbox/tick", "/_sandbox/tick", {}),
            ("post", "/_sandbox/complaints", "/_sandbox/complaints", {"params": {"n": 2}}),
            ("get", "/_sandbox/laporan/{tracking_id}", f"/_sandbox/laporan/{tid}", {}),
            ("get", "/_sandbox/stats", "/_sandbox/stats", {}),
            ("get", "/_sandbox/openapi.yaml", "/_sandbox/openapi.yaml", {}),
        ]
        for method, template, url, kw in calls:
            r = await c.request(
                method.upper(), url, headers={**auth, **kw.pop("headers", {})}, **kw
            )
            documented = DOC["paths"][template][method]["responses"]
            assert str(r.status_code) in documented, (template, r.status_code)
            schema = response_schema(template, method, r.status_code)
            if schema is not None:
                validator(schema).validate(r.json())
            checked.add((template, method))
    every = {(p, m) for p, ops in DOC["paths"].items() for m in ops}
    assert checked == every  # every documented operation was exercised
