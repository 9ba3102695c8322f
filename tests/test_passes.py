"""PerPass: what a loop pass gathers is handed over once, at its end, in order."""

from __future__ import annotations

import asyncio

from hubbub.passes import PerPass


async def test_a_pass_is_handed_over_once_in_order_and_later_adds_wait_for_the_next() -> None:
    runs: list[list[int]] = []

    def run(items: list[int]) -> None:
        runs.append(items)
        if items == [1, 2, 3, 4]:
            batch.add(5)  # added while handing over: the next pass (Rule 2)

    batch: PerPass[int] = PerPass(run)
    batch.add(1)
    batch.extend([2, 3])
    batch.add(4)
    assert runs == []  # nothing before the pass ends
    await asyncio.sleep(0)
    assert runs == [[1, 2, 3, 4]]  # Rule 1
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
