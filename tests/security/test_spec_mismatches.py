"""The mismatches between the server and /openapi.json that schemathesis found,
each pinned down: the spec and the server now say the same."""

from __future__ import annotations

import pytest

from tests.conftest import UNIT, HubServer

pytestmark = pytest.mark.timeout(30 * UNIT)


async def test_seconds_take_any_decimals(hub_server: HubServer) -> None:
    """``wait`` is a JSON Schema number: more than 6 decimals, or an exponent, are
    seconds like any other; out of range is still 400."""
    async with hub_server.client() as c:
        for wait in ("0.0000001", "1e-05", "0.12345678901234567890"):
            r = await c.get("/v1/topics/s.a/messages", params={"wait": wait})
            assert r.status_code == 200, (wait, r.text)
        for wait in ("1e3", "-1", "1e999", "0x10", "1.2.3"):
            r = await c.get("/v1/topics/s.a/messages", params={"wait": wait})
            assert r.status_code == 400, (wait, r.text)


async def test_plain_get_of_the_websocket_endpoint(hub_server: HubServer) -> None:
    """RFC 9110 §15.5.22: 426 with ``Upgrade: websocket``, a documented answer."""
    async with hub_server.client() as c:
        r = await c.get("/v1/ws")
        assert r.status_code == 426
        assert r.headers["upgrade"] == "websocket"
        assert r.json()["code"] == "upgrade-required"
        spec = (await c.get("/openapi.json")).json()
        assert "426" in spec["paths"]["/v1/ws"]["get"]["responses"]


async def test_described_as_served(hub_server: HubServer) -> None:
    """An empty ``topic=`` is refused and described so; a publish with no body is
    stored and described so; SSE events are described as events."""
    async with hub_server.client() as c:
        r = await c.get("/v1/messages", params={"topic": ""})
        assert r.status_code == 400
        r = await c.post("/v1/topics/s.b")
        assert r.status_code == 201
        spec = (await c.get("/openapi.json")).json()
    paths = spec["paths"]
    assert spec["components"]["parameters"]["Topics"]["schema"]["items"]["minLength"] == 1
    assert paths["/v1/topics/{topic}"]["post"]["requestBody"]["required"] is False
    events = paths["/v1/topics/{topic}/events"]["get"]["responses"]["200"]
    schema = events["content"]["text/event-stream"]["schema"]
    assert schema["type"] == "object" and "data" in schema["properties"]
