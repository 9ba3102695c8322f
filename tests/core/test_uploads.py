"""Uploads in the core (``hub.uploads``), with no server: expiry, sweeping, directories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from hubbub.config import Config, UploadsConfig
from hubbub.core import Hub
from hubbub.core.uploads import GONE_MS
from hubbub.engines import open_engine
from hubbub.protocol.errors import NotFound, UploadExpired


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


async def body(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hub(tmp_path: Path, clock: Clock) -> AsyncIterator[Hub]:
    config = Config(uploads=UploadsConfig(dir=str(tmp_path), expiration=60, keep=3600))
    async with Hub(open_engine("memory://"), config, clock=clock) as h:
        yield h


async def test_unfinished_upload_expires_then_is_swept(hub: Hub, clock: Clock) -> None:
    """60 s after its last write an upload answers 410; an hour later the sweep
    deletes its file and it is unknown."""
    up = await hub.uploads.create(10)
    clock.t += 50
    up = await hub.uploads.append(up.id, 0, body([b"abc"]))  # a write renews the expiry
    clock.t += 50
    assert (await hub.uploads.get(up.id)).offset == 3
    clock.t += 11
    with pytest.raises(UploadExpired):
        await hub.uploads.get(up.id)
    with pytest.raises(UploadExpired):
        await hub.uploads.append(up.id, 3, body([b"def"]))
    assert await hub.uploads.sweep() == 0
    assert hub.uploads.path(up.id).exists()
    clock.t += GONE_MS / 1000
    assert await hub.uploads.sweep() == 1
    assert not hub.uploads.path(up.id).exists()
    with pytest.raises(NotFound):
        await hub.uploads.get(up.id)
    page = await hub.poll([f"uploads.{up.id}"])
    assert [m.value()["event"] for m in page.messages][-1] == "expired"


async def test_completed_upload_is_kept_for_keep(hub: Hub, clock: Clock) -> None:
    up = await hub.uploads.create(3)
    up = await hub.uploads.append(up.id, 0, body([b"a", b"bc"]))
    assert up.done and up.completed is not None
    clock.t += 3000
    assert (await hub.uploads.get(up.id)).done
    clock.t += 601
    with pytest.raises(UploadExpired):
        await hub.uploads.get(up.id)


async def test_zero_length_upload_is_complete_at_once(hub: Hub) -> None:
    up = await hub.uploads.create(0)
    assert up.done and hub.uploads.path(up.id).read_bytes() == b""


async def test_stale_tail_is_cut(hub: Hub) -> None:
    """Bytes past the recorded offset (a crash between write and commit) are
    overwritten by the next append, never kept."""
    up = await hub.uploads.create(6)
    await hub.uploads.append(up.id, 0, body([b"abc"]))
    with hub.uploads.path(up.id).open("ab") as f:
        f.write(b"STALE-TAIL")
    await hub.uploads.append(up.id, 3, body([b"def"]))
    assert hub.uploads.path(up.id).read_bytes() == b"abcdef"


async def test_default_directory_for_sqlite(tmp_path: Path) -> None:
    """<store dir>/uploads for SQLite, made on the first upload only."""
    hub = Hub(open_engine(f"sqlite:///{tmp_path / 'db' / 'hub.db'}"), Config())
    async with hub:
        where = hub.uploads.path("0" * 32).parent
        assert where == tmp_path / "db" / "uploads"
        assert not where.exists()
        up = await hub.uploads.create(1)
        assert hub.uploads.path(up.id).parent == where and where.is_dir()


async def test_default_directory_for_memory_is_temporary() -> None:
    """A temporary directory for the memory store, removed when the hub stops."""
    async with Hub(open_engine("memory://"), Config()) as hub:
        up = await hub.uploads.create(1)
        where = hub.uploads.path(up.id).parent
        assert where.is_dir()
    assert not where.exists()
