"""The browser rules of :mod:`hubbub.protocol.origins`: headers in, a verdict out (no loop)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import Config, ConfigError
from hubbub.protocol.errors import Forbidden, Misdirected
from hubbub.protocol.origins import (
    Policy,
    is_loopback_name,
    normalize_origin,
    split_host,
)

OPEN = Policy()
EVIL = "https://evil.example"


@pytest.mark.parametrize("value, expected", [
    ("localhost", ("localhost", None)), ("LocalHost:8080", ("localhost", 8080)),
    ("[::1]", ("::1", None)), ("[::1]:80", ("::1", 80)), ("127.0.0.1:1", ("127.0.0.1", 1)),
    ("example.com.", ("example.com", None)),
    ("", None), (":80", None), ("a:b", None), ("a:99999", None), ("[::1", None),
    ("[nope]:1", None), ("a b", None), ("a/b", None), ("a:", None), ("[::1]x", None),
])
def test_split_host(value: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host(value) == expected


@pytest.mark.parametrize("name, loopback", [
    ("localhost", True), ("app.localhost", True), ("127.0.0.1", True), ("127.1.2.3", True),
    ("::1", True), ("localhost.evil.example", False), ("0.0.0.0", False),
    ("10.0.0.1", False), ("evil.example", False), ("notlocalhost", False),
])
def test_loopback_names_need_no_dns(name: str, loopback: bool) -> None:
    assert is_loopback_name(name) is loopback


@pytest.mark.parametrize("value, expected", [
    ("https://App.Example.com", "https://app.example.com"),
    ("https://app.example.com:443", "https://app.example.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"), ("http://[::1]:9", "http://[::1]:9"),
    ("*", "*"), ("null", None), ("app.example.com", None), ("https://a.b/path", None),
    ("ftp://a.b", None), ("https://", None),
])
def test_normalize_origin(value: str, expected: str | None) -> None:
    assert normalize_origin(value) == expected


def test_an_open_hub_serves_loopback_host_names_only() -> None:
    OPEN.check("GET", host="localhost:8080", origin=None, fetch_site=None)
    OPEN.check("GET", host=None, origin=None, fetch_site=None)  # HTTP/1.0: no browser
    for host in ("evil.example", "localhost.evil.example:80", "10.0.0.1", "[::1", ""):
        with pytest.raises(Misdirected):
            OPEN.check("GET", host=host, origin=None, fetch_site=None)
    Policy(open_hub=False).check("GET", host="evil.example", origin=None, fetch_site=None)
    listed = Policy(("hub.example.com",), open_hub=False)
    listed.check("GET", host="hub.example.com:8443", origin=None, fetch_site=None)
    with pytest.raises(Misdirected):
        listed.check("GET", host="evil.example", origin=None, fetch_site=None)


@pytest.mark.parametrize("origin, host, refused", [
    ("http://localhost:8080", "localhost:8080", False),
    ("https://localhost", "localhost:443", False),      # default ports left out
    ("http://localhost:8081", "localhost:8080", True),   # another port: another origin
    ("http://127.0.0.1:8080", "localhost:8080", True),   # another name: another site
    (EVIL, "localhost", True), ("null", "localhost", True), ("garbage", "localhost", True),
])
def test_writes_from_another_origin_are_refused(origin: str, host: str, refused: bool) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        if refused:
            with pytest.raises(Forbidden):
                OPEN.check(method, host=host, origin=origin, fetch_site=None)
        else:
            OPEN.check(method, host=host, origin=origin, fetch_site=None)
    OPEN.check("GET", host=host, origin=origin, fetch_site="cross-site")  # CORS guards reads


def test_websocket_upgrades_are_judged_by_origin_only() -> None:
    with pytest.raises(Forbidden):
        OPEN.check("GET", host="localhost", origin=EVIL, fetch_site=None, websocket=True)
    OPEN.check("GET", host="localhost", origin=None, fetch_site="cross-site", websocket=True)
    Policy(origins=(EVIL,)).check("GET", host="localhost", origin=EVIL, fetch_site=None,
                                  websocket=True)


def test_fetch_site_refuses_a_write_without_origin() -> None:
    for site in ("cross-site", "Same-Site "):
        with pytest.raises(Forbidden):
            OPEN.check("POST", host="localhost", origin=None, fetch_site=site)
    for site in ("same-origin", "none", None):
        OPEN.check("POST", host="localhost", origin=None, fetch_site=site)


def test_configured_origins_may_write() -> None:
    policy = Policy(origins=(EVIL,))
    policy.check("POST", host="localhost", origin="HTTPS://evil.example:443", fetch_site=None)
    with pytest.raises(Forbidden):
        policy.check("POST", host="localhost", origin="https://evil.example.net",
                     fetch_site=None)
    Policy(origins=("*",)).check("POST", host="localhost", origin=EVIL, fetch_site=None)


@given(st.text(max_size=40), st.none() | st.text(max_size=40), st.none() | st.text(max_size=20),
       st.sampled_from(["GET", "POST", "OPTIONS", "DELETE"]), st.booleans())
def test_any_header_text_gives_a_verdict(host: str, origin: str | None, site: str | None,
                                         method: str, websocket: bool) -> None:
    """Whatever the headers say, the answer is: through, 403 or 421."""
    for policy in (OPEN, Policy(("*",), (EVIL,), open_hub=False)):
        with contextlib.suppress(Forbidden, Misdirected):
            policy.check(method, host=host, origin=origin, fetch_site=site, websocket=websocket)


def test_config_reads_the_browser_settings() -> None:
    server = Config.from_dict({"server": {
        "allowed_hosts": ["Hub.Example.com", ".corp.test", "[::1]"],
        "cors_origins": ["HTTPS://App.example.com:443"], "cors_credentials": True,
        "cors_max_age": "5m"}}).server
    assert server.allowed_hosts == ("hub.example.com", ".corp.test", "::1")
    assert server.cors_origins == ("https://app.example.com",)
    assert server.cors_credentials is True and server.cors_max_age == 300
    defaults = Config().server
    assert defaults.allowed_hosts == () and defaults.cors_origins == ()
    for bad in ({"allowed_hosts": ["a.b:80"]}, {"allowed_hosts": "a"},
                {"cors_origins": ["app.example.com"]}, {"cors_origins": ["https://a/b"]},
                {"cors_credentials": 1}, {"cors_origins": ["*"], "cors_credentials": True}):
        with pytest.raises(ConfigError):
            Config.from_dict({"server": bad})


def test_the_api_description_lists_the_refusals() -> None:
    from hubbub.transports.openapi import SPEC

    paths = SPEC["paths"]
    assert {"403", "421"} <= set(paths["/v1/ws"]["get"]["responses"])
    assert {"403", "421"} <= set(paths["/v1/topics/{topic}"]["post"]["responses"])
    assert "421" in paths["/v1/topics"]["get"]["responses"]
    assert "421" not in paths["/healthz"]["get"]["responses"]
    assert "allowed_hosts" in SPEC["components"]["responses"]["P421"]["description"]
