"""TLS on hubbub's server: HTTP/1.1 and WebSocket over TLS, ALPN offered."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from hubbub.config import Config
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app


def self_signed(dir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = dir / "cert.pem", dir / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
async def tls_hub(tmp_path: Path) -> AsyncIterator[tuple[HubServer, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path)
    app = create_app("memory://", Config())
    srv = await serve_app(app, app, tls_cert=str(cert), tls_key=str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        yield srv, trust
    finally:
        await srv.stop()


async def test_http_and_websocket_over_tls(tls_hub: tuple[HubServer, ssl.SSLContext]) -> None:
    srv, trust = tls_hub
    base = srv.url.replace("http://", "https://")
    async with httpx.AsyncClient(base_url=base, verify=trust, timeout=10 * UNIT) as http:
        r = await http.post("/v1/topics/tls.a", json={"n": 1})
        assert r.status_code == 201 and r.http_version == "HTTP/1.1"
        r = await http.get("/v1/topics/tls.a/messages", params={"after": "start"})
        assert [m["data"] for m in r.json()["messages"]] == [{"n": 1}]
    ws_url = srv.ws_url.replace("ws://", "wss://") + "/v1/ws"
    async with connect(ws_url, ssl=trust, subprotocols=["hubbub.v1.json"],  # type: ignore[list-item]
                       proxy=None) as ws:
        await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["tls.a"],
                                  "after": "start"}))
        assert json.loads(await ws.recv())["op"] == "ok"
        assert json.loads(await ws.recv())["data"] == {"n": 1}
