"""Tokens out of log lines (pure).

A bearer token in a log is a credential anyone who reads the log can use.
RFC 6750 §2.3 warns that a token sent as ``?token=`` (which browsers'
``EventSource`` and ``WebSocket`` need) ends up in access logs, and an
``Authorization`` header may be logged by a debugging proxy or a traceback.
:func:`redact` replaces the token of both forms with ``[redacted]``;
:class:`RedactTokens` does it to every record a logger or handler passes.

``hubbub serve`` puts a :class:`RedactTokens` on the handlers of its
loggers (the access log included, where hubbub's server writes the request
line). An application that mounts the hub adds one to its own::

    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
# ``token=`` as a query parameter (also percent-encoded inside another URL),
# and the credential after ``Bearer`` (RFC 6750 §2.1: b64token characters).
_QUERY_RE = re.compile(r"((?:^|[?&;\s\"'])(?:access_)?token=)[^&;\s\"'#]*", re.IGNORECASE)
_BEARER_RE = re.compile(r"(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every ``token=`` value and ``Bearer`` credential replaced.

    >>> redact('GET /v1/events?topic=a&token=eyJhbGciOi.x.y HTTP/1.1')
    'GET /v1/events?topic=a&token=[redacted] HTTP/1.1'
    """
    lowered = text.lower()
    if "token=" not in lowered and "bearer" not in lowered:
        return text  # the common case: a line with nothing to hide, as it is
    return _BEARER_RE.sub(r"\1" + REDACTED, _QUERY_RE.sub(r"\1" + REDACTED, text))


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """A logging filter that redacts tokens from a record's message and arguments;
    it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_clean(a) for a in record.args)
        return True


__all__ = ["REDACTED", "RedactTokens", "redact"]
