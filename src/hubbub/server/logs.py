"""The log of ``hubbub serve``: text lines for a person, or JSON lines for a
log pipeline (``--log-format json``).

A JSON line is one object: ``time`` (RFC 3339, UTC, milliseconds), ``level``,
``logger``, ``message``, ``request_id`` (the request being served, see
:mod:`hubbub.transports.requestid`; ``null`` outside one) and, when the record
carries an exception, ``exception`` (its traceback as text). Every record of
the process goes through it, the server library's too, so the stream holds
nothing but JSON lines.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

from ..transports.requestid import RequestIdFilter

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (the module docstring lists its members)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return msgspec.json.encode(line).decode()


def configure(level: str, fmt: str = "text") -> None:
    """Log every record at ``level`` or above to stderr, as ``fmt`` (``text`` or
    ``json``); replaces the root logger's handlers.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    # On the handler, not a logger: a filter on a logger sees only the records
    # made on that very logger, not those its children pass up.
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


__all__ = ["FORMATS", "JsonFormatter", "configure"]
