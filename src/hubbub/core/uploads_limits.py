"""What an upload may take (:mod:`hubbub.core.uploads`): lengths, bodies and
quotas, checked against what is recorded. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from ..config import LimitsConfig
from ..protocol.errors import Conflict, InvalidRequest, PayloadTooLarge
from .uploads_record import Upload


def check_append(up: Upload, offset: int, length: int | None, declared: int | None,
                 max_size: int) -> Upload:
    """``up``, if an append of ``declared`` bytes (``None``: not known) at
    ``offset``, setting ``length`` (``None``: not given), may go on.

    Raises:
        InvalidRequest: ``length`` differs from the recorded length, or is
            less than the upload's offset.
        PayloadTooLarge: ``length`` is over ``max_size``, or the body would
            take the upload past its length.
        Conflict: ``offset`` is not the upload's offset; ``extra["offset"]`` is.
    """
    if length is not None:
        if up.length is not None and up.length != length:
            raise InvalidRequest("Upload-Length cannot change once set",
                                 field="Upload-Length")
        if length > max_size:
            raise PayloadTooLarge(f"uploads are limited to {max_size} bytes",
                                  field="Upload-Length")
        if length < up.offset:
            raise InvalidRequest("Upload-Length is less than the upload's offset",
                                 field="Upload-Length")
    if up.offset != offset:
        raise Conflict(f"Upload-Offset must be the upload's offset, {up.offset}",
                       field="Upload-Offset", offset=up.offset)
    limit = limit_of(up, length, max_size)
    if declared is not None and offset + declared > limit:
        raise PayloadTooLarge(f"the body would take the upload past {limit} bytes",
                              field="body")
    return up


def limit_of(up: Upload, length: int | None, max_size: int) -> int:
    """The size ``up`` may reach: its length, else ``length``, else ``max_size``."""
    total = up.length if up.length is not None else length
    return total if total is not None else max_size


def check_quota(uploads: Iterable[Upload], length: int, owner: str | None,
                limits: LimitsConfig) -> None:
    """Refuse ``length`` more bytes past ``[limits] upload_bytes`` (every stored
    upload, by its length, or the bytes it has while its length is deferred)
    or, for an owner, ``upload_bytes_per_principal``. Counted from the store,
    so uploads created at the same moment may pass a limit together.

    Raises:
        PayloadTooLarge: a limit would be passed; ``limit`` names the setting.
    """
    per_owner = limits.upload_bytes_per_principal if owner is not None else 0
    total = mine = 0
    for up in uploads:
        size = up.length if up.length is not None else up.offset
        total += size
        if up.owner == owner:
            mine += size
    for limit, used, name in ((limits.upload_bytes, total, "upload_bytes"),
                              (per_owner, mine, "upload_bytes_per_principal")):
        if limit and used + length > limit:
            raise PayloadTooLarge(
                f"uploads would pass [limits] {name} ({limit} bytes; {used} in use)",
                field="Upload-Length", limit=name)
