"""Uploads come back as downloads, never as pages of the hub's origin; the dashboard's headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import Config, UploadsConfig
from hubbub.protocol.tus import format_metadata
from hubbub.transports.uploads import download_headers
from tests.conftest import HubServer, start_server, store_url

TUS = {"Tus-Resumable": "1.0.0"}
PAGE = b"<script>alert(sessionStorage.getItem('hubbub.token'))</script>"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubServer]:
    config = Config(uploads=UploadsConfig(dir=str(tmp_path / "uploads")))
    srv = await start_server(store_url("sqlite", tmp_path), config)
    try:
        yield srv
    finally:
        await srv.stop()


async def _upload(c: httpx.AsyncClient, data: bytes, metadata: dict[str, str]) -> str:
    r = await c.post("/v1/uploads/", content=data, headers={
        **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": format_metadata(metadata),
        "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 201, r.text
    return r.headers["location"]


@pytest.mark.parametrize("metadata, disposition", [
    ({"filetype": "text/html"}, "attachment"),
    ({"filetype": "text/html", "filename": "x.html"}, 'attachment; filename="x.html"'),
    ({"filetype": "image/svg+xml", "filename": "../../évil\".svg"},
     "attachment; filename=\"_vil_.svg\"; filename*=UTF-8''%C3%A9vil%22.svg"),
])
async def test_an_html_upload_is_an_attachment_never_a_page(
    hub: HubServer, metadata: dict[str, str], disposition: str
) -> None:
    """Finding: filetype text/html came back inline, with no nosniff and no CSP."""
    async with hub.client() as c:
        url = await _upload(c, PAGE, metadata)
        r = await c.get(url)
    assert r.status_code == 200 and r.content == PAGE
    assert r.headers["content-disposition"] == disposition
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "sandbox"


@pytest.mark.parametrize("name, expected", [
    ("", "attachment"), ("  ", "attachment"), ("a.bin", 'attachment; filename="a.bin"'),
    ("dir/sub\\a b.txt", 'attachment; filename="a b.txt"'),
    ("100%.txt", "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt"),
    ("a\r\nSet-Cookie: x", "attachment; filename=\"a__Set-Cookie: x\"; "
                           "filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x"),
])
def test_download_headers_quote_any_name(name: str, expected: str) -> None:
    assert download_headers(name)["Content-Disposition"] == expected


@given(st.text(max_size=60))
def test_any_file_name_gives_one_safe_header_value(name: str) -> None:
    """Whatever the metadata's filename, the header is printable ASCII with no
    line break or stray quote (no header injection), and says attachment."""
    value = download_headers(name)["Content-Disposition"]
    assert value.startswith("attachment")
    assert all(" " <= c <= "~" for c in value)
    if 'filename="' in value:
        quoted = value.split('filename="', 1)[1].split('"', 1)
        assert len(quoted) == 2 and "\\" not in quoted[0]


async def test_the_dashboard_sends_its_security_headers(hub: HubServer) -> None:
    async with hub.client() as c:
        for path in ("/", "/dashboard/app.js"):
            r = await c.get(path)
            assert r.status_code == 200
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert "default-src 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["x-frame-options"] == "DENY"
