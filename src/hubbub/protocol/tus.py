"""The tus 1.0.0 resumable upload protocol: constants and header parsers (pure).

No I/O and no HTTP framework here: the door (:mod:`hubbub.transports.uploads`)
reads headers and hands their text to these functions, the client
(:mod:`hubbub.client.uploads`) formats its headers with them, and the tests
feed them arbitrary text (hypothesis). Every parser raises
:class:`~hubbub.protocol.errors.InvalidRequest` naming the header at fault; tus 1.0.0
answers malformed headers with ``400 Bad Request``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Final

from .errors import InvalidRequest

#: The protocol version this hub speaks (``Tus-Resumable``, ``Tus-Version``).
VERSION: Final = "1.0.0"
#: ``Tus-Extension``: what the OPTIONS answer lists.
EXTENSIONS: Final = (
    "creation", "creation-with-upload", "creation-defer-length", "termination",
    "checksum", "expiration",
)
#: ``Tus-Checksum-Algorithm``, in the order the OPTIONS answer lists them.
CHECKSUM_ALGORITHMS: Final = ("sha1", "md5", "sha256", "sha512")
#: The media type of a PATCH body (tus 1.0.0 §PATCH: "MUST use Content-Type:
#: application/offset+octet-stream, otherwise the server SHOULD return a 415").
OFFSET_STREAM: Final = "application/offset+octet-stream"

# "Upload-Offset ... MUST be a non-negative integer"; 19 digits bound it below 2**63.
_UINT_RE = re.compile(r"[0-9]{1,19}")
# "The key MUST NOT contain spaces and commas and MUST NOT be empty."
_KEY_RE = re.compile(r"[^ ,]+")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
MAX_METADATA = 4096
MAX_METADATA_PAIRS = 64


def parse_uint(text: str | None, *, header: str) -> int | None:
    """A non-negative decimal integer header (``Upload-Offset``, ``Upload-Length``).

    Returns ``None`` when the header is absent.

    Raises:
        InvalidRequest: anything else than 1-19 ASCII digits.
    """
    if text is None:
        return None
    text = text.strip()
    if _UINT_RE.fullmatch(text) is None:
        raise InvalidRequest(f"{header} must be a non-negative integer", field=header)
    return int(text)


def parse_metadata(text: str | None) -> dict[str, bytes]:
    """The pairs of an ``Upload-Metadata`` header, values base64-decoded.

    tus 1.0.0: "The Upload-Metadata request and response header MUST consist
    of one or more comma-separated key-value pairs. The key and value MUST be
    separated by a space. The key MUST NOT contain spaces and commas and MUST
    NOT be empty. The key SHOULD be ASCII encoded and the value MUST be Base64
    encoded. All keys MUST be unique. The value MAY be empty. In these cases,
    the space, which would normally separate the key and the value, MAY be
    left out."

    Raises:
        InvalidRequest: the header breaks any of those rules, or is too long.
    """
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_METADATA:
        raise InvalidRequest(f"Upload-Metadata is longer than {MAX_METADATA} characters",
                             field="Upload-Metadata")
    out: dict[str, bytes] = {}
    pairs = text.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise InvalidRequest(f"Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs",
                             field="Upload-Metadata")
    for pair in pairs:
        key, _, value = pair.strip().partition(" ")
        if _KEY_RE.fullmatch(key) is None or not key.isascii():
            raise InvalidRequest("Upload-Metadata keys must be non-empty ASCII without "
                                 "spaces or commas", field="Upload-Metadata")
        if key in out:
            raise InvalidRequest(f"Upload-Metadata key {key!r} is given twice",
                                 field="Upload-Metadata")
        out[key] = _b64(value, "Upload-Metadata")
    return out


def format_metadata(metadata: Mapping[str, str | bytes]) -> str:
    """An ``Upload-Metadata`` header for ``metadata`` (the inverse of :func:`parse_metadata`)."""
    parts = []
    for key, value in metadata.items():
        raw = value.encode() if isinstance(value, str) else value
        parts.append(f"{key} {base64.b64encode(raw).decode()}" if raw else key)
    return ",".join(parts)


def parse_checksum(text: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: ALGORITHM BASE64-DIGEST`` as ``(algorithm, digest)``.

    tus 1.0.0 (checksum): "The Upload-Checksum header MUST consist of the name
    of the used checksum algorithm and the Base64 encoded checksum separated by
    a space"; an unsupported algorithm gets ``400 Bad Request``.

    Raises:
        InvalidRequest: malformed, an unsupported algorithm, or a digest of
            the wrong length for its algorithm.
    """
    if text is None:
        return None
    algorithm, _, encoded = text.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidRequest(
            f"Upload-Checksum algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}",
            field="Upload-Checksum")
    digest = _b64(encoded.strip(), "Upload-Checksum")
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InvalidRequest(f"Upload-Checksum digest has the wrong length for {algorithm}",
                             field="Upload-Checksum")
    return algorithm, digest


def format_checksum(algorithm: str, digest: bytes) -> str:
    """An ``Upload-Checksum`` header value."""
    return f"{algorithm} {base64.b64encode(digest).decode()}"


def parse_defer_length(text: str | None) -> bool:
    """``Upload-Defer-Length``: "its value MUST be 1" (creation-defer-length).

    Raises:
        InvalidRequest: any other value.
    """
    if text is None:
        return False
    if text.strip() != "1":
        raise InvalidRequest("Upload-Defer-Length must be 1", field="Upload-Defer-Length")
    return True


def _b64(value: str, header: str) -> bytes:
    if _B64_RE.fullmatch(value) is None or len(value) % 4:
        raise InvalidRequest(f"{header} value is not valid base64", field=header)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{header} value is not valid base64", field=header) from None
