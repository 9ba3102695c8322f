"""Upload quotas (issue 18, item 4), on every engine.

Before: 50 uploads promising 10 GiB each were accepted. Now tus creation past
``[limits] upload_bytes`` (every stored upload) or, with authentication on,
``upload_bytes_per_principal`` answers 413 with a problem naming the limit.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hubbub.config import Config
from hubbub.core.auth import mint
from tests.conftest import UNIT, HubServer, start_server, store_url

pytestmark = pytest.mark.timeout(60 * UNIT)

TUS = {"Tus-Resumable": "1.0.0"}
SECRET = "quota-secret-for-tests-0123456789abcdef"


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"limits": {"upload_bytes": 1000}})


def too_large(r: httpx.Response, limit: str) -> None:
    assert r.status_code == 413, r.text
    doc: dict[str, Any] = r.json()
    assert doc["code"] == "payload-too-large" and doc["limit"] == limit, doc
    assert doc["field"] == "Upload-Length"
    assert r.headers["tus-resumable"] == "1.0.0"


async def create(c: httpx.AsyncClient, length: int, **headers: str) -> httpx.Response:
    return await c.post("/v1/uploads/", headers={**TUS, "Upload-Length": str(length), **headers})


async def test_total_upload_bytes(hub_server: HubServer) -> None:
    """Promised bytes count until the limit; a deferred length counts what it has;
    terminating an upload gives its bytes back."""
    async with hub_server.client() as c:
        r = await create(c, 900)
        assert r.status_code == 201, r.text
        too_large(await create(c, 101), "upload_bytes")
        r = await c.post("/v1/uploads/", headers={**TUS, "Upload-Defer-Length": "1"})
        assert r.status_code == 201, r.text
        assert (await create(c, 100)).status_code == 201
        too_large(await create(c, 1), "upload_bytes")
        first = r.headers["location"]
        assert (await c.delete(first, headers=TUS)).status_code == 204
        too_large(await create(c, 1), "upload_bytes")  # the deferred one had no bytes


async def test_per_principal_upload_bytes(engine: str, tmp_path: Any) -> None:
    """With authentication on, each subject has its own share as well."""
    config = Config.from_dict({
        "auth": {"secret": SECRET},
        "limits": {"upload_bytes": 1000, "upload_bytes_per_principal": 600},
    })
    srv = await start_server(store_url(engine, tmp_path), config)
    try:
        def auth(subject: str) -> dict[str, str]:
            token = mint(SECRET.encode(), subject, pub=["uploads.*"])
            return {"Authorization": f"Bearer {token}"}

        async with srv.client() as c:
            too_large(await create(c, 601, **auth("alice")), "upload_bytes_per_principal")
            assert (await create(c, 500, **auth("alice"))).status_code == 201
            too_large(await create(c, 101, **auth("alice")), "upload_bytes_per_principal")
            assert (await create(c, 450, **auth("bob"))).status_code == 201
            too_large(await create(c, 51, **auth("carol")), "upload_bytes")
    finally:
        await srv.stop()
