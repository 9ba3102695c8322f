"""start_now (a task started in the caller's step) and cancel_and_wait (the one way
the hub stops a background task)."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.loop.tasks import cancel_and_wait, start_now
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


@pytest.mark.parametrize("again_every", [None, 0.01])
async def test_an_exception_the_task_ends_with_is_passed_on(again_every: float | None) -> None:
    """A task that fails while unwinding raises that failure to the caller,
    whether or not it is cancelled again until it ends."""

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await asyncio.wait_for(cancel_and_wait(task, again_every=again_every), 5 * UNIT)


async def test_a_finished_task_is_left_as_it_is() -> None:
    """A task that already returned keeps its result."""
    task = asyncio.create_task(asyncio.sleep(0, result=7))
    await task
    await asyncio.wait_for(cancel_and_wait(task), 5 * UNIT)
    assert task.result() == 7


# -- start_now ---------------------------------------------------------------------


async def test_start_now_runs_the_first_step_before_it_returns() -> None:
    """What comes before the first wait has run when start_now returns; the
    rest runs in a task, as create_task would run all of it."""
    steps: list[str] = []
    gate = asyncio.get_running_loop().create_future()

    async def work() -> str:
        steps.append("first")
        await gate
        steps.append("rest")
        return "done"

    task = start_now(work(), name="eager-test")
    assert steps == ["first"]
    assert isinstance(task, asyncio.Task) and task.get_name() == "eager-test"
    gate.set_result(None)
    assert await asyncio.wait_for(task, 5 * UNIT) == "done"
    assert steps == ["first", "rest"]


async def test_start_now_without_a_wait_needs_no_task() -> None:
    """A coroutine that ends without waiting gives a future done already:
    its result, or its error (not raised to the caller)."""

    async def quick() -> int:
        return 7

    async def broken() -> int:
        raise ValueError("no")

    done = start_now(quick())
    assert not isinstance(done, asyncio.Task) and done.done() and done.result() == 7
    failed = start_now(broken())
    assert failed.done()
    with pytest.raises(ValueError, match="no"):
        failed.result()


async def test_start_now_passes_on_results_errors_and_values_sent() -> None:
    """After its first wait the coroutine gets what each awaited future
    resolved to, and its exception reaches whoever awaits the task."""
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()

    async def work() -> int:
        a = await first
        try:
            await second
        except KeyError:
            return a + 1
        return -1

    task = start_now(work())
    first.set_result(41)
    await asyncio.sleep(0)
    second.set_exception(KeyError("k"))
    assert await asyncio.wait_for(task, 5 * UNIT) == 42

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("later")

    with pytest.raises(RuntimeError, match="later"):
        await asyncio.wait_for(start_now(fails_later()), 5 * UNIT)


async def test_cancelling_a_task_started_now_reaches_the_coroutine() -> None:
    """Cancelling the task cancels the wait the coroutine is in: its cleanup
    runs, and it may even catch the cancellation and answer."""
    unwound: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            unwound.append(True)

    task = start_now(forever())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert unwound == [True]

    # Cancelled before its first step, the task cancels the future the
    # coroutine waits on, as a task cancelled while waiting does.
    loop = asyncio.get_running_loop()
    awaited = loop.create_future()

    async def waits() -> None:
        await awaited

    early = start_now(waits())
    early.cancel()
    with pytest.raises(asyncio.CancelledError):
        await early
    assert awaited.cancelled()

    async def answers_anyway() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # it may still wait for something
            return "cleaned up"
        return "slept"

    stubborn = start_now(answers_anyway())
    await asyncio.sleep(0)
    stubborn.cancel()
    assert await asyncio.wait_for(stubborn, 5 * UNIT) == "cleaned up"


async def test_tasks_started_now_keep_the_order_of_their_first_steps() -> None:
    """Each first step runs in the order of the calls, before the next call:
    what the WebSocket pipeline relies on to hand ops to the store in order."""
    order: list[int] = []

    async def op(i: int) -> int:
        order.append(i)
        await asyncio.sleep(0)
        order.append(100 + i)
        return i

    tasks = [start_now(op(i)) for i in range(5)]
    assert order == [0, 1, 2, 3, 4]
    assert await asyncio.gather(*tasks) == [0, 1, 2, 3, 4]
    assert order[5:] == [100, 101, 102, 103, 104]


async def test_the_rest_of_a_coroutine_can_be_awaited_as_well() -> None:
    """What start_now hands its task is an awaitable like any coroutine: awaited
    directly, it waits where the coroutine stands, then finishes it."""
    from hubbub.loop.tasks import _Rest

    gate = asyncio.get_running_loop().create_future()

    async def work() -> int:
        return await gate + 1

    coro = work()
    rest = _Rest(coro, coro.send(None))
    asyncio.get_running_loop().call_soon(gate.set_result, 1)
    assert await asyncio.wait_for(_awaited(rest), 5 * UNIT) == 2


async def _awaited(awaitable: object) -> object:
    return await awaitable  # type: ignore[misc]


async def test_a_lost_cancellation_is_sent_again_when_asked() -> None:
    """A task that loses a cancellation (as a library may, catching it and
    waiting on) keeps plain cancel_and_wait waiting; with again_every it is
    cancelled again until it ends."""
    lost: list[int] = []

    async def loses_one() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            lost.append(1)  # swallowed: waits on as if nothing happened
        await asyncio.sleep(3600)

    stubborn = asyncio.create_task(loses_one())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(cancel_and_wait(stubborn)), 0.2 * UNIT)
    assert lost == [1] and not stubborn.done()
    stubborn.cancel()  # what the shielded call left waiting
    with pytest.raises(asyncio.CancelledError):
        await stubborn

    lost.clear()
    task = asyncio.create_task(loses_one())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, again_every=0.01), 5 * UNIT)
    assert lost == [1] and task.cancelled()

