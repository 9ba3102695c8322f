"""Authentication and authorization in the core: no loop, no network.

Credentials in, a :class:`Principal` or an error out; a principal, an action
and a topic in, a verdict out. The clock is an argument.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from hubbub.config import Config, ConfigError
from hubbub.core.auth import OPEN, Action, Auth, may, mint
from hubbub.protocol.errors import Forbidden, InvalidRequest, InvalidTopic, Unauthorized, UsageError

SECRET = "0123456789abcdef0123456789abcdef"
PUB, SUB = Action.PUBLISH, Action.SUBSCRIBE


def auth(**section: Any) -> Auth:
    raw: dict[str, Any] = {"auth": {"secret": SECRET, **section}}
    namespaces = raw["auth"].pop("namespaces", None)
    if namespaces:
        raw["namespaces"] = namespaces
    return Auth(Config.from_dict(raw))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_off_means_open() -> None:
    """With no [auth], every client is OPEN, credentials or not, and may do everything."""
    off = Auth(Config())
    assert not off.enabled
    assert off.authenticate(None, None) is OPEN
    assert off.authenticate("Basic whatever", "junk") is OPEN
    off.check(OPEN, PUB, "any.topic")
    assert may(OPEN, SUB, ">")


def test_jwt_claims_become_a_principal() -> None:
    """sub names the subject; hubbub.pub/sub list the patterns; exp is kept."""
    a = auth()
    token = mint(SECRET.encode(), "alice", pub=["chat.>"], sub=["chat.>", "news.*"], ttl=60)
    p = a.authenticate(bearer(token), None)
    assert p is not None and p.subject == "alice" and not p.admin and not p.anonymous
    assert p.pub.patterns == ("chat.>",) and p.sub.patterns == ("chat.>", "news.*")
    assert p.expires is not None and p.expires > time.time()
    assert a.authenticate(None, token).subject == "alice"  # type: ignore[union-attr]
    assert a.authenticate(f"bearer   {token}  ", None) is not None  # scheme is case-insensitive


@pytest.mark.parametrize("header", [
    "", "Bearer", "Bearer ", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Token abc", "abc",
    "Bearer a.b.c", "Bearer " + "x" * 20000, "Bearer ....", "Bearer e30.e30.", "Bearer \x00",
])
def test_malformed_authorization_is_unauthorized(header: str) -> None:
    """Every malformed header is Unauthorized naming Authorization (never another error)."""
    with pytest.raises(Unauthorized) as info:
        auth().authenticate(header, None)
    assert info.value.field == "Authorization"


def test_no_credentials() -> None:
    """No credential: None (ask for one), or the anonymous grant when configured."""
    assert auth().authenticate(None, None) is None
    anon = auth(anonymous={"sub": ["public.>"]}).authenticate(None, None)
    assert anon is not None and anon.anonymous and anon.sub.patterns == ("public.>",)


def test_header_and_query_together_is_invalid() -> None:
    token = mint(SECRET.encode(), "a")
    with pytest.raises(InvalidRequest):
        auth().authenticate(bearer(token), token)


@pytest.mark.parametrize(("claims", "key", "alg", "message"), [
    ({"exp": 1}, SECRET, "HS256", "token has expired"),
    ({"nbf": 4_000_000_000}, SECRET, "HS256", "token is not valid yet"),
    ({}, "another-secret-another-secret-32b!", "HS256", "token signature does not verify"),
    ({"hubbub": []}, SECRET, "HS256", "token claim hubbub must be an object"),
    ({"hubbub": {"pub": "chat.>"}}, SECRET, "HS256", "token claim hubbub.pub must be a list"),
    ({"hubbub": {"sub": ["a.>.b"]}}, SECRET, "HS256", "token claim hubbub.sub[0] is not"),
    ({"hubbub": {"sub": [3]}}, SECRET, "HS256", "token claim hubbub.sub[0] is not"),
    ({"hubbub": {"admin": "yes"}}, SECRET, "HS256", "token claim hubbub.admin"),
    ({"sub": ["a"]}, SECRET, "HS256", "token is malformed"),  # PyJWT: sub must be a string
    ({"exp": "soon"}, SECRET, "HS256", "token is malformed"),
    ({}, SECRET * 2, "HS384", "token algorithm must be one of HS256"),  # secret < 48 bytes
])
def test_bad_jwts(claims: dict[str, Any], key: str, alg: str, message: str) -> None:
    token = jwt.encode(claims, key, algorithm=alg)
    with pytest.raises(Unauthorized) as info:
        auth().authenticate(bearer(token), None)
    assert info.value.message.startswith(message), info.value.message


def test_issuer_and_audience_are_checked_when_configured() -> None:
    a = auth(issuer="https://login", audience="hubbub")
    good = jwt.encode({"iss": "https://login", "aud": "hubbub"}, SECRET, algorithm="HS256")
    assert a.authenticate(bearer(good), None) is not None
    for claims, message in (
        ({"iss": "https://evil", "aud": "hubbub"}, "token is from another issuer"),
        ({"iss": "https://login", "aud": "other"}, "token is for another audience"),
        ({"aud": "hubbub"}, "token has no iss claim"),
        ({"iss": "https://login"}, "token has no aud claim"),
    ):
        with pytest.raises(Unauthorized) as info:
            a.authenticate(bearer(jwt.encode(claims, SECRET, algorithm="HS256")), None)
        assert info.value.message == message


def test_public_keys_pick_their_algorithms(tmp_path: Path) -> None:
    """An EC key verifies ES256 only, an Ed25519 key EdDSA only; the secret HS256."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    for private, alg in ((ec_key, "ES256"), (ed_key, "EdDSA")):
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (tmp_path / "key.pem").write_bytes(pem)
        a = auth(public_key_file=str(tmp_path / "key.pem"))
        token = jwt.encode({"sub": "k", "hubbub": {"sub": ["x.>"]}}, private, algorithm=alg)
        p = a.authenticate(bearer(token), None)
        assert p is not None and p.subject == "k"
        other = "RS256" if alg == "ES256" else "ES256"
        # A header naming another algorithm is refused before any key is tried.
        b64 = jwt.utils.base64url_encode
        forged = b".".join([b64(f'{{"alg":"{other}"}}'.encode()), b64(b"{}"), b64(b"sig")])
        with pytest.raises(Unauthorized, match="token algorithm must be one of"):
            a.authenticate(bearer(forged.decode()), None)
        a.authenticate(bearer(mint(SECRET.encode(), "h")), None)  # the secret still works


def test_api_keys() -> None:
    """An API key stands for its configured grant; the key itself is not kept."""
    key = "hk_live_0123456789abcdef"
    a = auth(api_keys={key: {"subject": "svc", "pub": ["jobs-queue.x"], "admin": False}})
    p = a.authenticate(bearer(key), None)
    assert p is not None and p.subject == "svc" and p.pub.patterns == ("jobs-queue.x",)
    assert key not in repr(a.settings)
    with pytest.raises(Unauthorized):
        a.authenticate(bearer(key + "x"), None)
    only_keys = Auth(Config.from_dict({"auth": {"api_keys": {key: {"sub": ["a"]}}}}))
    with pytest.raises(Unauthorized, match="unknown API key"):
        only_keys.authenticate(bearer(mint(SECRET.encode(), "a")), None)


def principal(**claims: Any) -> Any:
    a = auth(namespaces={"news": {"subscribers": ["*"], "publishers": ["editor"]}})
    token = mint(SECRET.encode(), claims.pop("subject", "alice"), **claims)
    return a, a.authenticate(bearer(token), None)


@pytest.mark.parametrize(("action", "topic", "allowed"), [
    (PUB, "chat.a", True), (PUB, "chat.a.b", True), (PUB, "chat", False),
    (PUB, "admin.x", False), (SUB, "chat.a", True), (SUB, "chat.*", True),
    (SUB, "chat.>", True), (SUB, ">", False), (SUB, "*.a", False), (SUB, "feed.a", True),
    (SUB, "feed.*", True), (SUB, "feed.>", False), (SUB, "feed.a.b", False),
    (SUB, "news.today", True), (SUB, "news.>", True), (PUB, "news.today", False),
])
def test_may(action: Action, topic: str, allowed: bool) -> None:
    """Claims allow by matching or covering (invariant "patterns need a covering grant");
    namespaces add grants (invariant "namespace rules add grants")."""
    a, p = principal(pub=["chat.>"], sub=["chat.>", "feed.*"])
    assert a.may(p, action, topic) is allowed


def test_check_refusals() -> None:
    """Forbidden for a known client, Unauthorized for the anonymous one; bad input first."""
    a, p = principal(pub=["chat.>"])
    a.check(p, PUB, "chat.a")
    with pytest.raises(Forbidden) as info:
        a.check(p, PUB, "admin.x", field="[2].topic")
    assert info.value.message == "alice may not publish to admin.x"
    assert info.value.field == "[2].topic"
    with pytest.raises(InvalidTopic):
        a.check(p, PUB, "chat..a")
    editor = a.authenticate(bearer(mint(SECRET.encode(), "editor")), None)
    assert editor is not None
    a.check(editor, PUB, "news.x")
    anon = auth(anonymous={"sub": ["public.>"]}, namespaces={"news": {"subscribers": ["*"]}})
    nobody = anon.authenticate(None, None)
    assert nobody is not None
    anon.check(nobody, SUB, "public.a")
    with pytest.raises(Unauthorized):
        anon.check(nobody, SUB, "news.x")  # "*" is every *authenticated* client


def test_admin_may_everything() -> None:
    a, p = principal(admin=True)
    a.check_all(p, PUB, ["x", "y.z"])
    a.check(p, SUB, ">")


def test_expired() -> None:
    """A credential expires at exp plus the leeway (the WebSocket door closes then)."""
    start = int(time.time())
    now = [float(start)]
    a = Auth(Config.from_dict({"auth": {"secret": SECRET, "leeway": 5}}), clock=lambda: now[0])
    p = a.verify(mint(SECRET.encode(), "a", ttl=10, now=start))
    assert not a.expired(p)
    now[0] = start + 14.0
    assert not a.expired(p)
    now[0] = start + 16.0
    assert a.expired(p)


def test_mint() -> None:
    token = mint(SECRET.encode(), "bob", pub=["a.>"], sub=["b.*"], admin=True, ttl=60,
                 issuer="i", audience="h", now=1000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="h",
                        options={"verify_exp": False})
    assert claims == {"iat": 1000, "exp": 1060, "sub": "bob", "iss": "i", "aud": "h",
                      "hubbub": {"pub": ["a.>"], "sub": ["b.*"], "admin": True}}
    with pytest.raises(UsageError):
        mint(b"short", "a")
    with pytest.raises(InvalidTopic):
        mint(SECRET.encode(), "a", pub=["a..b"])


@pytest.mark.parametrize(("section", "message"), [
    ({"secret": "short"}, "auth.secret: must be at least 32 bytes"),
    ({"secret": SECRET, "secret_file": "/x"}, "auth: give secret or secret_file, not both"),
    ({"secret_file": "/nonexistent/secret"}, "auth.secret_file: cannot read"),
    ({"public_key": "not a key"}, "auth.public_key: not a PEM public key"),
    ({"api_keys": {"short": {}}}, "an API key must be at least 16 characters"),
    ({"api_keys": {"k" * 20: {"pub": ["a..b"]}}}, "pub[0]:"),
    ({"api_keys": {"k" * 20: {"what": 1}}}, ".what: unknown setting"),
    ({"anonymous": {"admin": True}}, "auth.anonymous.admin: unknown setting"),
    ({"leeway": "soon"}, "auth.leeway"),
    ({"whatever": 1}, "auth.whatever: unknown setting"),
])
def test_config_errors(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"auth": section})
    assert message in str(info.value)
    assert "k" * 20 not in str(info.value)  # an API key is never repeated whole


def test_namespace_rule_config() -> None:
    config = Config.from_dict({"namespaces": {"news": {"subscribers": ["*"]}}})
    assert config.for_topic("news.x").subscribers == ("*",)
    with pytest.raises(ConfigError, match="namespaces.news.publishers"):
        Config.from_dict({"namespaces": {"news": {"publishers": "alice"}}})
