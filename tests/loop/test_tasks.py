"""cancel_and_wait: the one way the hub stops a background task."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.loop.tasks import cancel_and_wait
from tests.conftest import UNIT


async def test_none_is_nothing_to_stop() -> None:
    """``None`` returns at once."""
    await asyncio.wait_for(cancel_and_wait(None), 5 * UNIT)


async def test_a_running_task_is_cancelled_and_unwound() -> None:
    """The task's cleanup has run when the call returns; the cancellation is
    not passed on to the caller."""
    unwound = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            unwound.append(True)

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5 * UNIT)
    assert task.cancelled() and unwound == [True]


async def test_an_exception_the_task_ends_with_is_passed_on() -> None:
    """A task that fails while unwinding raises that failure to the caller."""

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await asyncio.wait_for(cancel_and_wait(task), 5 * UNIT)


async def test_a_finished_task_is_left_as_it_is() -> None:
    """A task that already returned keeps its result."""
    task = asyncio.create_task(asyncio.sleep(0, result=7))
    await task
    await asyncio.wait_for(cancel_and_wait(task), 5 * UNIT)
    assert task.result() == 7
