"""PerPass: what a loop pass gathers is handed over once, at its end, in order."""

from __future__ import annotations

import asyncio

from hubbub.loop.passes import PerPass


async def test_a_pass_is_handed_over_once_in_order_and_later_adds_wait_for_the_next() -> None:
    runs: list[list[int]] = []

    def run(items: list[int]) -> None:
        runs.append(items)
        if items == [1, 2, 3, 4]:
            batch.add(5)  # added while handing over: the next pass ("late items wait a pass")

    batch: PerPass[int] = PerPass(run)
    batch.add(1)
    batch.extend([2, 3])
    batch.add(4)
    assert runs == []  # nothing before the pass ends
    await asyncio.sleep(0)
    assert runs == [[1, 2, 3, 4]]  # "each item once, in order"
    await asyncio.sleep(0)
    assert runs == [[1, 2, 3, 4], [5]]
    await asyncio.sleep(0)
    assert len(runs) == 2  # nothing added, nothing run


def test_each_loop_has_its_own_pass() -> None:
    seen: list[list[str]] = []
    batch: PerPass[str] = PerPass(seen.append)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        batch.add("a", first)
        batch.add("b", second)
        first.run_until_complete(asyncio.sleep(0))
        assert seen == [["a"]]
        second.run_until_complete(asyncio.sleep(0))
        assert seen == [["a"], ["b"]]
    finally:
        first.close()
        second.close()


async def test_a_chain_of_stages_runs_in_one_pass() -> None:
    """Items given to another PerPass while one runs are handed over right
    after it, in the same callback; a stage that already ran waits for the
    next pass (invariant "late items wait a pass", trade-off "stages chain in
    one pass")."""
    log: list[str] = []

    def first_run(items: list[int]) -> None:
        log.append(f"first {items}")
        second.extend(items)

    def second_run(items: list[int]) -> None:
        log.append(f"second {items}")
        third.add(sum(items))
        if items == [1, 2]:
            first.add(9)  # already ran: the next pass ("late items wait a pass")

    def third_run(items: list[int]) -> None:
        log.append(f"third {items}")

    first: PerPass[int] = PerPass(first_run)
    second: PerPass[int] = PerPass(second_run)
    third: PerPass[int] = PerPass(third_run)
    first.extend([1, 2])
    await asyncio.sleep(0)
    assert log == ["first [1, 2]", "second [1, 2]", "third [3]"]
    await asyncio.sleep(0)
    assert log[3:] == ["first [9]", "second [9]", "third [9]"]
    await asyncio.sleep(0)
    assert len(log) == 6


async def test_a_stage_that_fails_leaves_the_rest_to_their_own_pass() -> None:
    """An error in one stage is the loop's to report; the stages still waiting
    get their items in a callback of their own."""
    got: list[list[str]] = []

    def failing(items: list[str]) -> None:
        later.extend(items)
        raise RuntimeError("stage failed")

    later: PerPass[str] = PerPass(got.append)
    first: PerPass[str] = PerPass(failing)
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    first.add("x")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got == [["x"]]
    assert [str(e["exception"]) for e in errors] == ["stage failed"]


async def test_a_task_started_by_a_stage_hands_its_items_over_in_a_pass_of_its_own() -> None:
    """A task made while a stage's callback runs carries that callback's
    context into later passes; what it adds there is still handed over, by a
    callback of its own."""
    got: list[list[str]] = []
    later: PerPass[str] = PerPass(got.append)
    tasks: list[asyncio.Task[None]] = []

    async def add_later() -> None:
        later.add("y")

    def start(items: list[str]) -> None:
        tasks.append(asyncio.get_running_loop().create_task(add_later()))

    first: PerPass[str] = PerPass(start)
    first.add("x")
    await asyncio.sleep(0)
    await tasks[0]
    await asyncio.sleep(0)
    assert got == [["y"]]
