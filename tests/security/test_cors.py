"""CORS as configuration: preflights on every door, the headers on every answer.

What a real browser makes of them is :mod:`tests.security.test_cors_browser`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from hubbub.core.auth import mint
from tests.conftest import UNIT, HubServer, start_server

APP = "https://app.example.com"
OTHER = "https://other.example"
SECRET = b"a-test-secret-of-at-least-32-bytes!!"
UPLOAD = "/v1/uploads/0123456789abcdef0123456789abcdef"
DOORS = [
    ("POST", "/v1/topics/x.y"), ("POST", "/v1/publish"), ("GET", "/v1/messages"),
    ("GET", "/v1/events"), ("GET", "/v1/topics/x.y/events"), ("POST", "/v1/jobs/q"),
    ("GET", "/v1/jobs/abc/events"), ("POST", "/v1/groups/g/pull"),
    ("POST", "/v1/requests/x.y"), ("POST", "/v1/uploads/"), ("PATCH", UPLOAD),
    ("HEAD", UPLOAD), ("DELETE", UPLOAD), ("GET", "/v1/topics"),
]
TUS_HEADERS = ["tus-resumable", "upload-length", "upload-offset", "upload-metadata",
               "upload-checksum", "upload-defer-length", "upload-concat"]


def _config(tmp_path: Path, **server: object) -> Config:
    return Config.from_dict({"server": server,
                             "uploads": {"dir": str(tmp_path / "uploads")}})


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubServer]:
    srv = await start_server("memory://", _config(
        tmp_path, cors_origins=[APP], cors_max_age="5m"))
    try:
        yield srv
    finally:
        await srv.stop()


def preflight(method: str, origin: str, headers: str = "content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers}


@pytest.mark.parametrize("method, path", DOORS)
async def test_a_configured_origin_gets_its_preflight_on_every_door(
    hub: HubServer, method: str, path: str
) -> None:
    asked = ", ".join(["authorization", "idempotency-key", "last-event-id", *TUS_HEADERS])
    async with hub.client() as c:
        r = await c.options(path, headers=preflight(method, APP, asked))
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert method in r.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert set(asked.split(", ")) <= allowed
    assert r.headers["access-control-max-age"] == "300"
    assert "access-control-allow-credentials" not in r.headers
    assert "Origin" in r.headers["vary"]


async def test_answers_to_a_configured_origin_say_so_and_expose_tus(hub: HubServer) -> None:
    async with hub.client() as c:
        r = await c.post("/v1/uploads/", headers={
            "Origin": APP, "Tus-Resumable": "1.0.0", "Upload-Length": "3"})
        assert r.status_code == 201
        assert r.headers["access-control-allow-origin"] == APP
        exposed = {h.strip().lower()
                   for h in r.headers["access-control-expose-headers"].split(",")}
        assert {"location", "upload-offset", "upload-length", "tus-resumable",
                "upload-expires", "tus-version", "tus-max-size"} <= exposed
        assert len(r.headers.get_list("access-control-expose-headers")) == 1
        r = await c.get("/v1/topics/x.y/messages", headers={"Origin": APP})
        assert r.headers["access-control-allow-origin"] == APP


async def test_other_origins_get_no_cors_headers(hub: HubServer) -> None:
    async with hub.client() as c:
        r = await c.options("/v1/topics/x.y", headers=preflight("POST", OTHER))
        assert "access-control-allow-origin" not in r.headers
        r = await c.get("/v1/topics", headers={"Origin": OTHER})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert "Origin" in r.headers["vary"]
        r = await c.post("/v1/topics/x.y", json=1, headers={"Origin": OTHER})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


async def test_by_default_no_origin_gets_cors(tmp_path: Path) -> None:
    """Never a wildcard by default: no origin is configured, none is answered."""
    srv = await start_server("memory://", _config(tmp_path))
    try:
        async with srv.client() as c:
            r = await c.options("/v1/topics/x.y", headers=preflight("POST", APP))
            assert "access-control-allow-origin" not in r.headers
            r = await c.get("/v1/topics", headers={"Origin": APP})
            assert not [h for h in r.headers if h.startswith("access-control-allow")]
            # tus's capability answer (not a preflight) is as it was.
            r = await c.options("/v1/uploads/")
            assert r.status_code == 204 and r.headers["tus-version"] == "1.0.0"
    finally:
        await srv.stop()


async def test_credentials_and_refusals_readable_by_the_page(tmp_path: Path) -> None:
    """With cors_credentials, answers say so; a 401 (auth on) is readable by the page."""
    config = Config.from_dict({"server": {"cors_origins": [APP], "cors_credentials": True},
                               "auth": {"secret": SECRET.decode()}})
    srv = await start_server("memory://", config)
    try:
        async with srv.client() as c:
            r = await c.options("/v1/topics/x.y",
                                headers=preflight("POST", APP, "authorization"))
            assert r.status_code == 204
            assert r.headers["access-control-allow-credentials"] == "true"
            r = await c.get("/v1/topics", headers={"Origin": APP})
            assert r.status_code == 401
            assert r.headers["access-control-allow-origin"] == APP
            assert "WWW-Authenticate" in r.headers["access-control-expose-headers"]
            tok = mint(SECRET, "a", pub=["x.>"])
            r = await c.post("/v1/topics/x.y", json=1, headers={
                "Origin": APP, "Authorization": f"Bearer {tok}"})
            assert r.status_code == 201
            assert r.headers["access-control-allow-credentials"] == "true"
    finally:
        await srv.stop()


async def test_mounted_hub_answers_preflights_too(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from hubbub.transports.app import create_app

    hub_app = create_app("memory://", _config(tmp_path, cors_origins=[APP]))
    app = Starlette(routes=[Mount("/hub", hub_app)])
    async with hub_app.state.hub, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        r = await c.options("/hub/v1/publish", headers=preflight("POST", APP))
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP
        r = await c.post("/hub/v1/topics/x.y", json=1, headers={"Origin": APP})
        assert r.status_code == 201 and r.headers["access-control-allow-origin"] == APP


def test_hubbub_serve_puts_cors_on_whole_responses(spawn_hub: Any, tmp_path: Path) -> None:
    """``hubbub serve`` writes some answers whole (publish receipts, poll pages)
    through its own server; a configured origin's requests get CORS on them too."""
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[server]\ncors_origins = ["{APP}"]\n')
    proc = spawn_hub("memory://", "--config", str(config))
    with httpx.Client(base_url=proc.url, timeout=10 * UNIT) as c:
        for _ in range(2):
            r = c.post("/v1/topics/x.y", json=1, headers={"Origin": APP})
            assert r.status_code == 201
            assert r.headers["access-control-allow-origin"] == APP
            r = c.get("/v1/topics/x.y/messages", params={"after": "start", "wait": 1},
                      headers={"Origin": APP})
            assert r.status_code == 200 and len(r.json()["messages"]) >= 1
            assert r.headers["access-control-allow-origin"] == APP
            assert "location" in r.headers["access-control-expose-headers"].lower()
        r = c.get("/v1/topics/x.y/messages", params={"after": "start"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
