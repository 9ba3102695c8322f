"""Authentication and authorization: who a client is, and what it may do (no HTTP).

Every door authenticates a request or a connection once, with
:meth:`Auth.authenticate`, and asks :meth:`Auth.check` before it touches a
topic, so every transport enforces the same rules (``docs/auth.md``)::

    principal = hub.auth.authenticate("Bearer eyJhbGciOi...", None)
    hub.auth.check(principal, Action.PUBLISH, "chat.room1")    # or raises Forbidden

A credential is a bearer token: a JWT signed with the configured HS256
secret or by the holder of the configured public key, or an API key from
``[auth.api_keys]``. A JWT carries its grant in a private claim::

    {"sub": "alice", "exp": 1767225600,
     "hubbub": {"pub": ["chat.>"], "sub": ["chat.>", "news.*"], "admin": false}}

(``sub`` at the top is RFC 7519's subject; inside ``hubbub`` it is the list of
patterns the subject may subscribe to, as NATS names its ``pub``/``sub``
permissions.)

Invariants
----------
"no rules, no checks": With no ``[auth]`` rule configured, authentication is off: every
    client is :data:`OPEN`, which may do everything, and credentials are
    not even looked at. ``hubbub serve`` refuses to listen on a public
    address in that state.
"a bad credential is refused": A credential that is given must be valid: a bad, expired or foreign
    one is refused (:class:`~hubbub.protocol.errors.Unauthorized`), never taken
    for no credential at all.
"anonymous gets its grant": No credential gives the ``[auth.anonymous]`` grant when one is
    configured, else ``None``: the door asks for credentials (401, or the
    WebSocket ``auth`` op).
"patterns need a covering grant": There are two actions, :attr:`Action.PUBLISH` and
    :attr:`Action.SUBSCRIBE`; every operation of every door is one of
    them on some topic (the table in ``docs/auth.md``). A concrete topic
    is allowed when a pattern of the matching claim list matches it. A
    pattern is allowed when *one* pattern of the list covers it
    (:func:`hubbub.protocol.topics.covers`): every topic it could ever match is
    allowed. ``chat.>`` allows subscribing to ``chat.*``; ``chat.a`` and
    ``chat.b`` together do not allow ``chat.*``.
"namespace rules add grants": Namespace rules add to claims: ``publishers`` and ``subscribers`` of
    a topic's namespace (its first token, when that is not a wildcard)
    list the subjects granted the action on all of it, ``"*"`` meaning
    every authenticated client (not the anonymous one).
"anonymous refusals ask to authenticate": A refusal is :class:`~hubbub.protocol.errors.Unauthorized` for the anonymous
    principal (credentials could help) and
    :class:`~hubbub.protocol.errors.Forbidden` for everyone else. Topics are
    validated before they are judged, so bad input is 400, not 403.
"a refused item refuses all": Doors check before they do anything: a refused item of a batch
    refuses the batch, nothing stored.
"groups are judged as topics": A consumer group's name is judged like a topic name
    (:meth:`Auth.check_group`): using group ``g`` needs the subscribe
    grant for the topic ``g`` (a one-token name, so ``orders-workers`` or
    ``*`` in the ``sub`` list, or a namespace rule for ``g``), on top of
    the grant for the group's topics. Names starting with ``jobs-`` belong
    to the job system: no client creates, pulls from or settles them
    through the group doors, not even an admin.
"presence names the subject": With authentication on, presence says who a connection is by its
    credential's subject: a ``client`` given that differs is refused, and
    the anonymous principal is present with none. (``info`` stays what the
    client says about itself.)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..config import MIN_SECRET_BYTES, Config, Grant
from ..protocol.errors import Forbidden, InvalidRequest, Unauthorized, UsageError
from ..protocol.leases import validate_group
from ..protocol.topics import TopicFilter, covers, is_pattern, namespace, validate_pattern

#: Longest credential looked at (a JWT with a few hundred patterns fits).
MAX_TOKEN = 16 << 10
#: Most patterns one claim list may hold.
MAX_PATTERNS = 256
#: The claims that hold a NumericDate (RFC 7519 §2: seconds since the epoch).
TIME_CLAIMS = ("exp", "nbf", "iat")
#: The prefix of the consumer groups of job queues (invariant "groups are judged as topics"; :mod:`hubbub.core.jobs`).
JOB_GROUP_PREFIX = "jobs-"
#: The fields that name where a credential came from (for WWW-Authenticate).
CREDENTIAL_FIELDS = frozenset({"Authorization", "token"})

_HMAC = (("HS256", 32), ("HS384", 48), ("HS512", 64))
_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512",
            "secp256k1": "ES256K"}


class Action(StrEnum):
    """What a client does to a topic (invariant "patterns need a covering grant")."""

    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    """An authenticated client (or the anonymous one) and what its credential grants.

    Attributes:
        subject: who it is (a JWT's ``sub``, an API key's ``subject``), if known.
        pub, sub: the topic patterns it may publish and subscribe to.
        admin: it may do everything.
        anonymous: it gave no credential.
        expires: when its credential expires (seconds since the epoch), if ever.
    """

    subject: str | None
    pub: TopicFilter
    sub: TopicFilter
    admin: bool = False
    anonymous: bool = False
    expires: float | None = None

    @classmethod
    def of(cls, grant: Grant, *, anonymous: bool = False,
           expires: float | None = None) -> Principal:
        return cls(grant.subject, TopicFilter(grant.pub), TopicFilter(grant.sub),
                   grant.admin, anonymous, expires)

    def to_dict(self) -> dict[str, Any]:
        """What a client may learn of itself (the WebSocket ``auth`` op's answer)."""
        out: dict[str, Any] = {"subject": self.subject, "admin": self.admin,
                               "pub": list(self.pub.patterns), "sub": list(self.sub.patterns)}
        if self.expires is not None:
            out["expires"] = self.expires
        return out


#: Everyone, when authentication is off (invariant "no rules, no checks").
OPEN = Principal(None, TopicFilter([">"]), TopicFilter([">"]), admin=True, anonymous=True)


def may(principal: Principal, action: Action, topic: str) -> bool:
    """Whether ``principal``'s own claims allow ``action`` on ``topic`` (a validated
    topic or pattern; invariant "patterns need a covering grant"). Namespace rules are :meth:`Auth.may`'s."""
    if principal.admin:
        return True
    allowed = principal.pub if action is Action.PUBLISH else principal.sub
    if not is_pattern(topic):
        return allowed(topic)
    return any(covers(p, topic) for p in allowed.patterns)


class Auth:
    """The hub's authenticator and judge, built from :class:`~hubbub.config.Config`."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        settings = config.auth
        self.settings = settings
        #: Whether any rule is configured (invariant "no rules, no checks").
        self.enabled = settings.enabled
        self._clock = clock
        self._anonymous = (None if settings.anonymous is None
                           else Principal.of(settings.anonymous, anonymous=True))
        self._keys: dict[str, Any] = {}
        if settings.secret is not None:
            for alg, size in _HMAC:
                if len(settings.secret) >= size:
                    self._keys[alg] = settings.secret
        if settings.public_key is not None:
            key = load_pem_public_key(settings.public_key.encode())
            for alg in _algorithms(key):
                self._keys[alg] = key

    # -- authentication ---------------------------------------------------------

    def authenticate(self, authorization: str | None, token: str | None) -> Principal | None:
        """The principal of a request's credentials (invariants "no rules, no checks", "a bad credential is refused" and "anonymous gets its grant").

        Args:
            authorization: the ``Authorization`` header, if given.
            token: the ``token`` query parameter, if given (browsers' EventSource
                and WebSocket cannot send headers).
        Returns:
            The principal; ``None`` when there is no credential and no
            anonymous grant: ask for one.
        Raises:
            Unauthorized: the credential is malformed, unknown, expired or forged.
            InvalidRequest: a token came both in the header and the query.
        """
        if not self.enabled:
            return OPEN
        if authorization is not None and token is not None:
            # RFC 6750 §2: "Clients MUST NOT use more than one method to
            # transmit the token in each request."
            raise InvalidRequest("send the token once: in Authorization or in ?token=",
                                 field="token")
        if authorization is not None:
            scheme, _, credential = authorization.strip().partition(" ")
            credential = credential.strip()
            if scheme.lower() != "bearer" or not credential:
                raise Unauthorized("Authorization must be 'Bearer <token>'",
                                   field="Authorization")
            return self.verify(credential, field="Authorization")
        if token is not None:
            return self.verify(token, field="token")
        return self._anonymous

    def verify(self, token: str, *, field: str = "token") -> Principal:
        """The principal of one bearer token: an API key or a JWT.

        Raises:
            Unauthorized: the token is none of the hub's, or no longer valid.
        """
        if not token or len(token) > MAX_TOKEN:
            raise Unauthorized("token is empty or too long", field=field)
        grant = self.settings.api_keys.get(
            hashlib.sha256(token.encode(errors="surrogateescape")).hexdigest())
        if grant is not None:
            return Principal.of(grant)
        if not self._keys:
            raise Unauthorized("unknown API key", field=field)
        return self._principal(self._decode(token, field), field)

    def _decode(self, token: str, field: str) -> dict[str, Any]:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthorized("token is neither an API key nor a JWT", field=field) from None
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None or not isinstance(alg, str):
            raise Unauthorized(f"token algorithm must be one of {', '.join(self._keys)}",
                               field=field)
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=s.audience, issuer=s.issuer,
                leeway=s.leeway)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", field=field) from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token is not valid yet", field=field) from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature does not verify", field=field) from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token is for another audience", field=field) from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token is from another issuer", field=field) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token has no {exc.claim} claim", field=field) from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthorized("token is malformed", field=field) from None
        for name in TIME_CLAIMS:
            # RFC 7519 §4.1.4: exp "MUST be a number containing a NumericDate
            # value"; PyJWT would take "1767225600" too, and such a token
            # could not be told apart by code that compares numbers.
            value = claims.get(name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise Unauthorized(f"token claim {name} must be a number", field=field)
        return claims

    def _principal(self, claims: dict[str, Any], field: str) -> Principal:
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise Unauthorized("token claim sub must be a string", field=field)
        mine = claims.get("hubbub", {})
        if not isinstance(mine, dict):
            raise Unauthorized("token claim hubbub must be an object", field=field)
        lists: list[tuple[str, ...]] = []
        for name in ("pub", "sub"):
            patterns = mine.get(name, [])
            if not isinstance(patterns, list) or len(patterns) > MAX_PATTERNS:
                raise Unauthorized(f"token claim hubbub.{name} must be a list of at most "
                                   f"{MAX_PATTERNS} topic patterns", field=field)
            for i, pattern in enumerate(patterns):
                if not isinstance(pattern, str) or not _valid_pattern(pattern):
                    raise Unauthorized(f"token claim hubbub.{name}[{i}] is not a topic pattern",
                                       field=field)
            lists.append(tuple(patterns))
        admin = mine.get("admin", False)
        if not isinstance(admin, bool):
            raise Unauthorized("token claim hubbub.admin must be true or false", field=field)
        exp = claims.get("exp")
        return Principal.of(Grant(subject, lists[0], lists[1], admin),
                            expires=float(exp) if isinstance(exp, int | float) else None)

    # -- authorization ----------------------------------------------------------

    def may(self, principal: Principal, action: Action, topic: str) -> bool:
        """Whether ``principal`` may do ``action`` on ``topic`` (a validated topic or
        pattern): by its claims (invariant "patterns need a covering grant") or its namespace's rules (invariant "namespace rules add grants")."""
        if may(principal, action, topic):
            return True
        if principal.anonymous:
            return False
        ns = namespace(topic)
        if ns in ("*", ">"):
            return False
        rules = self.config.for_topic(ns)
        who = rules.publishers if action is Action.PUBLISH else rules.subscribers
        return "*" in who or (principal.subject is not None and principal.subject in who)

    def check(self, principal: Principal, action: Action, topic: str, *,
              field: str = "topic") -> None:
        """Validate ``topic`` (a name or pattern) and refuse it unless allowed (invariant "anonymous refusals ask to authenticate").

        Raises:
            InvalidTopic: ``topic`` is malformed.
            Unauthorized: the anonymous principal may not; credentials may help.
            Forbidden: the principal may not.
        """
        if principal.admin:
            return
        validate_pattern(topic, field=field)
        if self.may(principal, action, topic):
            return
        verb = "publish to" if action is Action.PUBLISH else "subscribe to"
        if principal.anonymous:
            raise Unauthorized(f"authentication required to {verb} {topic}", field=field)
        who = principal.subject or "this credential"
        raise Forbidden(f"{who} may not {verb} {topic}", field=field)

    def check_group(self, principal: Principal, name: str, *, field: str = "group") -> None:
        """Refuse the use of consumer group ``name`` unless allowed (invariant "groups are judged as topics").

        Raises:
            InvalidRequest: ``name`` is malformed.
            Forbidden: the name is reserved for jobs, or the principal may not.
            Unauthorized: the anonymous principal may not; credentials may help.
        """
        validate_group(name, field=field)
        if name.startswith(JOB_GROUP_PREFIX):
            raise Forbidden(f"group names starting with {JOB_GROUP_PREFIX} are reserved "
                            "for job queues: use the jobs API", field=field)
        if principal.admin or self.may(principal, Action.SUBSCRIBE, name):
            return
        if principal.anonymous:
            raise Unauthorized(f"authentication required to use group {name}", field=field)
        who = principal.subject or "this credential"
        raise Forbidden(f"{who} may not use group {name}", field=field)

    def presence_client(self, principal: Principal, client: str | None) -> str | None:
        """The ``client`` a connection is present as (``docs/presence.md``): with
        authentication on, its credential's subject, whatever it says (invariant "presence names the subject").

        Raises:
            Forbidden: it names another ``client`` than its subject.
        """
        if not self.enabled:
            return client
        if client is not None and client != principal.subject:
            raise Forbidden("client must be the subject of your credential "
                            "(or be left out)", field="client")
        return principal.subject

    def check_all(self, principal: Principal, action: Action, topics: Iterable[str], *,
                  field: str = "topic") -> None:
        """:meth:`check` each topic: all are allowed, or the first refused one raises."""
        if principal.admin:
            return
        for topic in topics:
            self.check(principal, action, topic, field=field)

    def lifetime(self, principal: Principal) -> float | None:
        """Seconds until ``principal``'s credential expires (beyond the leeway),
        at least 0; ``None``: it never does."""
        if principal.expires is None:
            return None
        return max(0.0, principal.expires + self.settings.leeway - self._clock())

    def expired(self, principal: Principal) -> bool:
        """Whether ``principal``'s credential has expired by now (beyond the leeway)."""
        return (principal.expires is not None
                and self._clock() > principal.expires + self.settings.leeway)


def mint(
    secret: bytes,
    subject: str | None = None,
    *,
    pub: Iterable[str] = (),
    sub: Iterable[str] = (),
    admin: bool = False,
    ttl: float | None = 3600.0,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    """A JWT (HS256) the hub with ``secret`` accepts: what ``hubbub token`` prints.

    Args:
        pub, sub: topic patterns the holder may publish and subscribe to.
        ttl: seconds until it expires (``None``: never; avoid).
        now: the issue time (default: the clock).
    Raises:
        InvalidTopic: a pattern is malformed.
        UsageError: the secret is shorter than 32 bytes.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(f"the secret must be at least {MIN_SECRET_BYTES} bytes")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iat": issued}
    if subject is not None:
        claims["sub"] = subject
    if ttl is not None:
        claims["exp"] = issued + int(ttl)
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    grant: dict[str, Any] = {
        "pub": [validate_pattern(p, field="pub") for p in pub],
        "sub": [validate_pattern(p, field="sub") for p in sub],
    }
    if admin:
        grant["admin"] = True
    claims["hubbub"] = grant
    return jwt.encode(claims, secret, algorithm="HS256")


def _valid_pattern(pattern: str) -> bool:
    try:
        validate_pattern(pattern)
    except InvalidRequest:
        return False
    return True


def _algorithms(key: Any) -> tuple[str, ...]:
    """The JWS algorithms (RFC 7518 §3.1, RFC 8037) a public key verifies."""
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGS.get(key.curve.name)
        return (alg,) if alg else ()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    return ()


__all__ = ["OPEN", "Action", "Auth", "Principal", "may", "mint"]
