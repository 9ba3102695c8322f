"""How deeply a JSON document nests, found without parsing it (pure).

A parser recurses once per ``[`` or ``{``: msgspec gives up with
``RecursionError`` near Python's recursion limit, and before that it builds
as many nested objects as the document asks for. So every door measures a
client's JSON before decoding it, and refuses a document that nests deeper
than ``[limits] json_depth`` (:class:`~hubbub.protocol.errors.TooDeep`: 400,
WebSocket close 1007).

The measure is a scan, not a parse: strings are cut out (a bracket inside
one is text), then the depth after each bracket is the count of openings so
far less the closings. Every step runs in C (``bytes.count``, ``re.sub``,
``bytes.translate``, :func:`itertools.accumulate`), so a 1 MiB body of
brackets costs a few milliseconds, and a document with fewer openings than
the limit costs two ``count`` calls.

Malformed JSON may be measured wrongly (an unterminated string, say); it is
refused by the parser that comes next, which cannot recurse past the limit
either, since it meets the same brackets.
"""

from __future__ import annotations

import operator
import re
from itertools import accumulate, count

from .errors import TooDeep

#: Default deepest nesting accepted in a client's JSON (``[limits] json_depth``).
DEFAULT_JSON_DEPTH = 64

# An RFC 8259 string: quote, then characters that are neither quote nor
# backslash, or a backslash and any one character, then quote.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An opening counts 2 and a closing 0, so that the running sum less the count of
# brackets so far is the depth: 2 * opened - (opened + closed).
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in JSON text (0 for a scalar)."""
    raw = data.encode(errors="surrogatepass") if isinstance(data, str) else data
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    steps = brackets.translate(_STEPS)
    return max(map(operator.sub, accumulate(steps), count(1)), default=0)


def too_deep(data: bytes | str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep."""
    if isinstance(data, str):
        opened = data.count("[") + data.count("{")
    else:
        opened = data.count(b"[") + data.count(b"{")
    return opened > limit and json_depth(data) > limit


def check_depth(data: bytes | str, limit: int, *, field: str = "body") -> None:
    """Refuse JSON text that nests more than ``limit`` deep.

    Args:
        limit: the deepest nesting allowed; the caller adds the levels of its
            own envelope (a batch's list and item, a frame's object).
    Raises:
        TooDeep: it does; nothing was decoded.
    """
    if too_deep(data, limit):
        raise TooDeep(f"JSON nests deeper than {limit} levels", field=field, limit=limit)


__all__ = ["DEFAULT_JSON_DEPTH", "check_depth", "json_depth", "too_deep"]
