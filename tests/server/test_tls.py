"""TLS: the server's context, its one-line errors, ALPN, and ``hubbub serve``'s flags."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hubbub.config import Config, ConfigError
from hubbub.server.settings import ServerSettings
from hubbub.server.tls import TLSError, alpn_protocol, server_context

from ..conftest import UNIT, free_port
from .conftest import CertFiles, H2Hub, make_cert


def test_context_is_tls12_plus_with_alpn(cert_files: CertFiles) -> None:
    """The context refuses TLS older than 1.2 and loads the chain."""
    ctx = server_context(ServerSettings(tls_cert=cert_files.cert, tls_key=cert_files.key))
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_RENEGOTIATION and ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.verify_mode == ssl.CERT_NONE  # clients are not asked for certificates


@pytest.mark.parametrize(("which", "message"), [
    ("no-cert", "TLS needs both --tls-cert and --tls-key"),
    ("missing-cert", "--tls-cert ([server] tls_cert): no such file"),
    ("missing-key", "--tls-key ([server] tls_key): no such file"),
    ("mismatch", "is not the key of the certificate"),
    ("not-pem", "--tls-cert/--tls-key ([server] tls_cert, tls_key): cannot load"),
])
def test_bad_tls_files_say_which(tmp_path: Path, cert_files: CertFiles, which: str,
                                 message: str) -> None:
    """Each unusable TLS setting is one line naming the flag and the setting."""
    other = make_cert(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, key = {
        "no-cert": (None, cert_files.key),
        "missing-cert": (str(tmp_path / "nope.crt"), cert_files.key),
        "missing-key": (cert_files.cert, str(tmp_path / "nope.key")),
        "mismatch": (cert_files.cert, other.key),
        "not-pem": (str(garbage), cert_files.key),
    }[which]
    with pytest.raises(TLSError) as caught:
        server_context(ServerSettings(tls_cert=cert, tls_key=key))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_alpn_picks_h2_or_http11(h2_hub: H2Hub) -> None:
    """A client offering h2 gets h2; one offering only http/1.1 gets that; no TLS, no ALPN."""
    for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", h2_hub.port, ssl=h2_hub.client_context(offer))
        try:
            assert alpn_protocol(writer.transport) == chosen
            assert writer.transport.get_extra_info("ssl_object").version() in (
                "TLSv1.2", "TLSv1.3")
        finally:
            writer.transport.abort()  # the server's SETTINGS are unread: no TLS goodbye
    async with h2_hub.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        chosen = {alpn_protocol(p.transport) for p in h2_hub.protocols  # type: ignore[arg-type]
                  if p.transport is not None}
        assert "h2" in chosen and chosen <= {"h2", "http/1.1"}  # the server sees it too
    reader, writer = await asyncio.open_connection("127.0.0.1", h2_hub.port)
    assert alpn_protocol(writer.transport) is None  # no TLS
    writer.transport.abort()


def test_config_tls_keys(tmp_path: Path) -> None:
    """``[server] tls_cert`` and ``tls_key`` are file names; anything else is refused."""
    config = Config.from_dict({"server": {"tls_cert": "c.pem", "tls_key": "k.pem"}})
    assert (config.server.tls_cert, config.server.tls_key) == ("c.pem", "k.pem")
    with pytest.raises(ConfigError, match="server.tls_cert: expected a file name"):
        Config.from_dict({"server": {"tls_cert": 3}})


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubbub", "serve", "--store", "memory://",
                           "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=20 * UNIT)


def test_serve_refuses_bad_tls_flags(tmp_path: Path, cert_files: CertFiles) -> None:
    """``hubbub serve`` with an unusable TLS flag or setting exits 2 with one line."""
    out = _serve("--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", cert_files.key)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"hubbub: error: --tls-cert ([server] tls_cert): no such file: {tmp_path / 'nope.pem'}")
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[server]\ntls_cert = "{cert_files.cert}"\n')
    out = _serve("--config", str(config))
    assert out.returncode == 2 and "TLS needs both --tls-cert and --tls-key" in out.stderr


def test_serve_speaks_tls(cert_files: CertFiles) -> None:
    """``hubbub serve --tls-cert --tls-key`` answers over TLS and says https."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", "--store", "memory://", "--port", str(port),
         "--tls-cert", cert_files.cert, "--tls-key", cert_files.key],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"hubbub listening on https://127.0.0.1:{port}")
        deadline = time.monotonic() + 15 * UNIT
        while True:
            try:
                with httpx.Client(verify=ssl.create_default_context(cafile=cert_files.cert),
                                  timeout=5 * UNIT) as client:
                    r = client.post(f"https://localhost:{port}/v1/topics/chat.tls", json=1)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert r.status_code == 201
    finally:
        proc.terminate()
        proc.wait(20 * UNIT)
        if proc.stdout is not None:
            proc.stdout.close()
