"""Reading the ``[auth]`` table: secrets and keys (from files, too), API keys, grants."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..protocol.errors import InvalidTopic
from ..protocol.topics import validate_pattern
from .auth import MIN_SECRET_BYTES, AuthConfig, Grant
from .checks import ConfigError, parse_duration, read_strings


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    out = read_strings(value, where, "topic patterns")
    for i, pattern in enumerate(out):
        try:
            validate_pattern(pattern)
        except InvalidTopic as exc:
            raise ConfigError(f"{where}[{i}]: {exc.message}") from None
    return out


def _grant(section: Any, where: str, *, keys: set[str]) -> Grant:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    if unknown := sorted(set(section) - keys):
        raise ConfigError(f"{where}.{unknown[0]}: unknown setting")
    subject = section.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject):
        raise ConfigError(f"{where}.subject: expected a name")
    admin = section.get("admin", False)
    if not isinstance(admin, bool):
        raise ConfigError(f"{where}.admin: expected true or false")
    return Grant(subject, _patterns(section.get("pub", []), f"{where}.pub"),
                 _patterns(section.get("sub", []), f"{where}.sub"), admin)


def _read(path: Any, where: str) -> bytes:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}: expected a file path")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def read_auth(section: Any) -> AuthConfig:
    if not isinstance(section, dict):
        raise ConfigError("auth: expected a table")
    known = {"secret", "secret_file", "public_key", "public_key_file", "issuer", "audience",
             "leeway", "api_keys", "anonymous"}
    if unknown := sorted(set(section) - known):
        raise ConfigError(f"auth.{unknown[0]}: unknown setting")
    for one, other in (("secret", "secret_file"), ("public_key", "public_key_file")):
        if one in section and other in section:
            raise ConfigError(f"auth: give {one} or {other}, not both")
    secret: bytes | None = None
    if "secret_file" in section:
        secret = _read(section["secret_file"], "auth.secret_file").rstrip(b"\r\n")
    elif "secret" in section:
        if not isinstance(section["secret"], str):
            raise ConfigError("auth.secret: expected a string")
        secret = section["secret"].encode()
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"auth.secret: must be at least {MIN_SECRET_BYTES} bytes "
                          "(RFC 7518 §3.2); `openssl rand -hex 32` makes one")
    public_key: str | None = None
    if "public_key_file" in section:
        public_key = _read(section["public_key_file"], "auth.public_key_file").decode(
            errors="replace")
    elif "public_key" in section:
        if not isinstance(section["public_key"], str):
            raise ConfigError("auth.public_key: expected PEM text")
        public_key = section["public_key"]
    if public_key is not None:
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            pem_key = load_pem_public_key(public_key.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"auth.public_key: not a PEM public key ({exc})") from None
        kinds = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey,
                 ed448.Ed448PublicKey)
        if not isinstance(pem_key, kinds):
            raise ConfigError("auth.public_key: expected an RSA, EC or Ed25519/Ed448 key")
    claims: dict[str, str | None] = {}
    for key in ("issuer", "audience"):
        value = section.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"auth.{key}: expected a string")
        claims[key] = value
    leeway = parse_duration(section.get("leeway", 30), where="auth.leeway")
    keys = section.get("api_keys", {})
    if not isinstance(keys, dict):
        raise ConfigError("auth.api_keys: expected a table of keys")
    api_keys: dict[str, Grant] = {}
    for key, grant in keys.items():
        where = f"auth.api_keys.{key[:6]}..."  # never the whole key in a message
        if len(key) < 16:
            raise ConfigError(f"{where}: an API key must be at least 16 characters")
        api_keys[hashlib.sha256(key.encode()).hexdigest()] = _grant(
            grant, where, keys={"subject", "pub", "sub", "admin"})
    anonymous = None
    if "anonymous" in section:
        anonymous = _grant(section["anonymous"], "auth.anonymous", keys={"pub", "sub"})
    return AuthConfig(secret, public_key, claims["issuer"], claims["audience"], leeway,
                      api_keys, anonymous)


__all__ = ["read_auth"]
