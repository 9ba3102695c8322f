"""Settings of authentication: the keys that check tokens, API keys and what they grant."""

from __future__ import annotations

from dataclasses import dataclass, field

#: RFC 7518 §3.2: "A key of the same size as the hash output (for instance, 256
#: bits for "HS256") or larger MUST be used with this algorithm."
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Grant:
    """What one credential allows: topic patterns to publish and to subscribe to.

    ``admin`` allows everything. ``subject`` names the client (a JWT's ``sub``,
    an API key's ``subject``); namespace rules (``publishers``, ``subscribers``)
    grant by it.
    """

    subject: str | None = None
    pub: tuple[str, ...] = ()
    sub: tuple[str, ...] = ()
    admin: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How clients prove who they are (:mod:`hubbub.core.auth`); off when nothing is set."""

    #: The HS256 shared secret (also HS384/HS512 when long enough).
    secret: bytes | None = None
    #: A PEM public key: RS*/PS* for RSA, ES* for EC, EdDSA for Ed25519/Ed448.
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    #: SHA-256 hex digest of each API key -> what it grants (keys are not kept).
    api_keys: dict[str, Grant] = field(default_factory=dict)
    #: What a request with no credentials may do; ``None``: it must authenticate.
    anonymous: Grant | None = None

    @property
    def enabled(self) -> bool:
        """Whether any rule is set; when not, every client may do everything."""
        return bool(self.secret or self.public_key or self.api_keys) or self.anonymous is not None



__all__ = ["MIN_SECRET_BYTES", "AuthConfig", "Grant"]
