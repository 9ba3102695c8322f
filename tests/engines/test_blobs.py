"""The blob part of the Engine contract (``Engine.blobs()`` and the
:class:`~hubbub.engines.base.BlobStore` it returns), run against every engine.

Uploads rely on each promise here (:mod:`hubbub.core.uploads`), and
``tests/test_uploads_crash.py`` on the last ones: bytes written and synced
are in the file when the writer's process is killed, the lock dies with its
holder, and the SQLite engine finds its blobs in the same place after a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.engines.base import BlobStore
from hubbub.protocol.errors import Locked, NotFound

from .conftest import UNIT, MakeEngine, bounded

NAME = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def blobs(make_engine: MakeEngine, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """Each engine's blob store, in a directory of the test's own."""
    store = make_engine().blobs(str(tmp_path / "blobs"))
    yield store
    await store.close()


def read(store: BlobStore, name: str = NAME) -> bytes:
    return Path(store.path(name)).read_bytes()


def exists(store: BlobStore, name: str = NAME) -> bool:
    return Path(store.path(name)).exists()


@bounded()
async def test_create_makes_one_empty_blob(blobs: BlobStore, tmp_path: Path) -> None:
    """The directory is made with the first blob; a name is created once."""
    assert not (tmp_path / "blobs").exists()
    await blobs.create(NAME)
    assert read(blobs) == b""
    assert Path(blobs.path(NAME)).parent == tmp_path / "blobs"
    with pytest.raises(FileExistsError):
        await blobs.create(NAME)


@bounded()
async def test_writes_land_at_their_offsets_and_stay(
    blobs: BlobStore, make_engine: MakeEngine, tmp_path: Path
) -> None:
    """Writes go where they are told, gaps read as zeros, and a store opened
    afresh on the same directory finds the synced bytes."""
    await blobs.create(NAME)
    async with blobs.writer(NAME) as w:
        await w.write(b"abc", 0)
        await w.write(bytearray(b"XY"), 5)
        await w.write(b"d", 3)
        await w.sync()
    assert read(blobs) == b"abcd\x00XY"
    again = make_engine().blobs(str(tmp_path / "blobs"))
    assert read(again) == b"abcd\x00XY"
    await again.close()


@bounded()
async def test_truncate_cuts_only_a_longer_blob(blobs: BlobStore) -> None:
    """A stale tail goes; a blob shorter than the size is left as it is."""
    await blobs.create(NAME)
    async with blobs.writer(NAME) as w:
        await w.write(b"committed+STALE", 0)
        await w.truncate(9)
        await w.truncate(100)
        await w.write(b"!", 9)
    assert read(blobs) == b"committed!"


@bounded()
async def test_one_writer_at_a_time(
    blobs: BlobStore, make_engine: MakeEngine, tmp_path: Path
) -> None:
    """While a writer holds a blob, no other writer or lock gets it, from this
    store or another on the same directory (another node); then they do."""
    other = make_engine().blobs(str(tmp_path / "blobs"))
    await blobs.create(NAME)
    async with blobs.writer(NAME):
        for store in (blobs, other):
            with pytest.raises(Locked):
                async with store.writer(NAME):
                    pass
            with pytest.raises(Locked):
                async with store.lock(NAME):
                    pass
    async with other.lock(NAME):
        with pytest.raises(Locked):
            async with blobs.writer(NAME):
                pass
    async with other.writer(NAME) as w:
        await w.write(b"free", 0)
    assert read(blobs) == b"free"
    await other.close()


@bounded()
async def test_missing_blob(blobs: BlobStore) -> None:
    """No writer for a blob that is not there; locking or deleting it is no error."""
    with pytest.raises(NotFound):
        async with blobs.writer(NAME):
            pass
    async with blobs.lock(NAME):
        await blobs.delete(NAME)
    await blobs.create(NAME)
    await blobs.delete(NAME)
    assert not exists(blobs)
    await blobs.create(NAME)  # the name is free again
    assert read(blobs) == b""


@bounded()
async def test_a_cancelled_write_ends_before_the_lock_goes(blobs: BlobStore) -> None:
    """A write whose future is cancelled (its request was) still writes all
    its bytes, and the blob stays locked until it has: whoever gets the
    lock next never sees a half-written block."""
    data = os.urandom(32 << 20)
    await blobs.create(NAME)
    async with blobs.writer(NAME) as w:
        w.write(data, 0).cancel()
    while True:
        try:
            async with blobs.writer(NAME):
                break
        except Locked:
            await asyncio.sleep(0.001)
    assert read(blobs) == data


CHILD = """
import asyncio, sys
from hubbub.engines import open_engine

async def main():
    store = open_engine(sys.argv[1]).blobs(sys.argv[2])
    async with store.writer(sys.argv[3]) as w:
        await w.write(b"synced bytes", 0)
        await w.sync()
        print("locked", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def child_url(engine_name: str, tmp_path: Path) -> str:
    """A store URL of the engine's kind (the child never opens the engine)."""
    return {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'child.db'}",
            "redis": "redis://127.0.0.1:1/0"}[engine_name]


@bounded(30)
async def test_the_lock_dies_with_its_process(
    blobs: BlobStore, engine_name: str, tmp_path: Path
) -> None:
    """A writer killed with SIGKILL leaves its synced bytes in the blob and
    blocks no one: the kernel drops its lock."""
    await blobs.create(NAME)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, child_url(engine_name, tmp_path), str(tmp_path / "blobs"),
        NAME, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20 * UNIT)
        assert line == b"locked\n"
        with pytest.raises(Locked):
            async with blobs.writer(NAME):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    async with blobs.writer(NAME) as w:
        await w.truncate(6)
    assert read(blobs) == b"synced"


# -- where each engine keeps its blobs when not told ---------------------------------------


@bounded()
async def test_default_directory(make_engine: MakeEngine, engine_name: str,
                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: ``uploads`` beside its database, the same for every engine on
    the store (a restarted hub finds its uploads). Redis: ``hubbub-data/uploads``
    under the working directory. Memory: a temporary directory of its own,
    removed on close (nothing of it outlives the process)."""
    monkeypatch.chdir(tmp_path)
    here = Path.cwd()
    first, second = make_engine().blobs(), make_engine().blobs()
    where = Path(first.path(NAME)).parent
    await first.create(NAME)
    assert where.is_dir()
    if engine_name == "memory":
        assert Path(second.path(NAME)).parent != where
        assert not where.is_relative_to(tmp_path)
    else:
        expected = "store/uploads" if engine_name == "sqlite" else "hubbub-data/uploads"
        assert where.resolve() == here / expected
        assert second.path(NAME) == first.path(NAME)
    await first.close()
    await second.close()
    assert where.exists() == (engine_name != "memory")
