"""Engines under test: one factory per engine, so one contract suite covers them all.

As in Centrifuge's ``map_broker_shared_test.go``, a test asks for ``engine``
(opened, closed after the test) or ``make_engine`` (a factory for more
engines on the same store, e.g. to reopen it) and runs once per engine.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import pytest

from hubbub.engines.base import AppendRequest, Engine
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.redis import RedisEngine
from hubbub.engines.sqlite import SQLiteEngine
from hubbub.protocol.message import JSON
from tests.conftest import NOT_ON_REDIS, session_redis

#: Timeouts are multiples of this unit; raise HUBBUB_TEST_UNIT on slow machines.
UNIT = float(os.environ.get("HUBBUB_TEST_UNIT", "1.0"))
ENGINES = ["memory", "sqlite", "redis"]

P = ParamSpec("P")
R = TypeVar("R")


def bounded(units: float = 10) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Fail an async test that runs longer than ``units`` * UNIT seconds."""

    def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            async with asyncio.timeout(units * UNIT):
                return await fn(*args, **kwargs)

        return run

    return wrap


def req(topic: str, data: Any = 1, *, key: str | None = None,
        max_messages: int | None = None) -> AppendRequest:
    """A JSON append request; ``data`` is a small JSON value written as text."""
    text = data if isinstance(data, bytes) else str(data).encode()
    return AppendRequest(topic, text, JSON, key=key, max_messages=max_messages)


class MakeEngine(Protocol):
    def __call__(self, *, key_ttl_ms: int = ...) -> Engine: ...


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_engine(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> MakeEngine:
    """Make a not yet opened engine; for sqlite and redis every call is the same store.

    Each redis test gets a key prefix of its own on the session's redis-server.
    """
    if engine_name == "redis" and any(f in request.module.__name__ for f in NOT_ON_REDIS):
        pytest.skip("this feature is not available on the redis engine yet")
    prefix = "t" + uuid.uuid4().hex[:12]

    def make(**kw: Any) -> Engine:
        if engine_name == "memory":
            return MemoryEngine(**kw)
        if engine_name == "redis":
            return RedisEngine(session_redis().url, prefix=prefix, **kw)
        return SQLiteEngine(str(tmp_path / "store" / "hub.db"), **kw)

    return make


@pytest.fixture
async def engine(make_engine: MakeEngine) -> AsyncIterator[Engine]:
    """An opened engine of each kind, closed after the test."""
    e = make_engine()
    async with asyncio.timeout(10 * UNIT):
        await e.open()
    try:
        yield e
    finally:
        async with asyncio.timeout(10 * UNIT):
            await e.close()
