"""An upload's record (:mod:`hubbub.core.uploads`): what is stored, and how it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ..protocol.tus import parse_metadata


class Stored(msgspec.Struct, omit_defaults=True):
    """The record's value (JSON)."""

    offset: int
    length: int | None
    created: int
    expires: int | None
    metadata: str | None = None
    completed: int | None = None
    job: str | None = None
    #: Who made it (the credential's subject), for ``[limits] upload_bytes_per_principal``.
    owner: str | None = None


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Stored).decode


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload as recorded. ``length`` is ``None`` while deferred."""

    id: str
    offset: int
    length: int | None
    created: int
    expires: int | None
    metadata_header: str | None
    completed: int | None
    job: str | None
    version: int
    owner: str | None = None

    @property
    def done(self) -> bool:
        return self.length is not None and self.offset == self.length

    @property
    def metadata(self) -> dict[str, bytes]:
        return parse_metadata(self.metadata_header)

    def to_dict(self) -> dict[str, Any]:
        """The upload as JSON-friendly data (metadata values as text)."""
        return {
            "id": self.id, "offset": self.offset, "length": self.length,
            "created": self.created, "expires": self.expires, "completed": self.completed,
            "metadata": {k: v.decode(errors="replace") for k, v in self.metadata.items()},
        }


def upload_of(upload_id: str, stored: Stored, version: int) -> Upload:
    return Upload(upload_id, stored.offset, stored.length, stored.created, stored.expires,
                  stored.metadata, stored.completed, stored.job, version, stored.owner)
