"""Backoff delays: full jitter inside capped exponential bounds (pure, no loop)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.client import Backoff, BackoffPolicy
from hubbub.protocol.errors import UsageError


def test_bounds_double_up_to_the_cap() -> None:
    """The upper bound starts at base, grows by factor per failure, stops at cap."""
    policy = BackoffPolicy(base=0.1, cap=1.0, factor=2.0)
    assert [policy.bound(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.bound(10_000) == 1.0  # no overflow however long it fails


def test_full_jitter_spans_zero_to_the_bound() -> None:
    """With the random draw pinned at its extremes, delays are 0 and the bound."""
    top = Backoff(BackoffPolicy(base=0.5, cap=4.0), rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    bottom = Backoff(BackoffPolicy(base=0.5, cap=4.0), rand=lambda: 0.0)
    assert [bottom.next_delay() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_reset_starts_again_from_base() -> None:
    """A success makes the next failure wait as little as the first one did."""
    backoff = Backoff(BackoffPolicy(base=0.1, cap=10.0), rand=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() == 0.1


def test_delays_are_spread() -> None:
    """Many clients failing at once do not all come back at once."""
    rng = random.Random(7)
    delays = [Backoff(BackoffPolicy(base=1.0, cap=1.0), rand=rng.random).next_delay()
              for _ in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.9
    assert len({round(d, 3) for d in delays}) > 150


@given(st.floats(0.001, 10), st.floats(0.001, 100), st.floats(1, 4), st.integers(0, 50))
def test_every_delay_is_within_its_bound(base: float, extra: float, factor: float,
                                         failures: int) -> None:
    policy = BackoffPolicy(base=base, cap=base + extra, factor=factor)
    backoff = Backoff(policy)
    for n in range(failures):
        delay = backoff.next_delay()
        assert 0 <= delay <= policy.bound(n) <= policy.cap


@pytest.mark.parametrize("kw", [{"base": 0}, {"base": 2, "cap": 1}, {"factor": 0.5}])
def test_bad_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        BackoffPolicy(**kw)
