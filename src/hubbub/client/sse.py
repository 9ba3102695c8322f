"""A Server-Sent Events decoder (pure: no asyncio, no I/O).

Feed it lines, collect events, as the WHATWG HTML Standard, §9.2.6
"Interpreting an event stream", describes. The rules it implements:

* "If the line is empty (a blank line): dispatch the event."
* "If the line starts with a U+003A COLON character (:): ignore the line."
  (hubbub's heartbeats are such comments.)
* Otherwise the field name runs to the first colon; "if value starts with a
  U+0020 SPACE character, remove it from value".
* ``data``: "append the field value to the data buffer, then append a single
  U+000A LINE FEED (LF) character"; on dispatch, "if the data buffer's last
  character is a U+000A LINE FEED (LF) character, then remove the last
  character".
* ``id``: "if the field value does not contain U+0000 NULL, then set the last
  event ID buffer to the field value". The last event ID is *not* reset by a
  dispatch: an event without an ``id:`` line keeps the previous one, which
  is why :attr:`SSEDecoder.last_event_id` is the resume cursor.
* ``retry``: "if the field value consists of only ASCII digits", it is the
  reconnection time in milliseconds.
* "If the data buffer is an empty string, set the data buffer and the event
  type buffer to the empty string and return" (no event is dispatched).

Splitting the byte stream into lines (CRLF, LF or CR) is left to the caller:
``httpx.Response.aiter_lines()`` does it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (``message`` when unnamed), data and last event ID."""

    event: str
    data: str
    id: str


class SSEDecoder:
    """Turns the lines of an event stream into :class:`SSEEvent` objects."""

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        #: The server's ``retry:`` advice in milliseconds, if it gave one.
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []

    def receive_line(self, line: str) -> SSEEvent | None:
        """Take one line (without its end-of-line); return the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        # Any other field name is ignored, as the standard says.
        return None

    def _dispatch(self) -> SSEEvent | None:
        event, data = self._event, self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SSEEvent(event or "message", "\n".join(data), self.last_event_id)
