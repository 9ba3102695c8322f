"""Reconnection delays: capped exponential backoff with full jitter (pure).

The delay before retry ``n`` (0 for the first) is drawn uniformly from
``[0, min(cap, base * factor ** n)]``: "full jitter" in the AWS Architecture
Blog's "Exponential Backoff And Jitter" (2015). Drawing from the whole range,
rather than adding a little noise to a fixed delay, is what spreads a crowd of
clients that all lost their connection at the same instant (a hub restart) so
that they do not all come back at the same instant too.

:class:`Backoff` holds only the attempt count. The caller asks for the next
delay when something failed and calls :meth:`Backoff.reset` when something
worked (a message arrived, a publish was stored), so one bad minute does not
make every later reconnect slow. Randomness comes in as an argument, so tests
can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol import errors


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait between attempts.

    Args:
        base: the upper bound of the first delay, in seconds.
        cap: no delay is ever longer than this.
        factor: how much the upper bound grows per failed attempt.
    """

    base: float = 0.1
    cap: float = 5.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap) or not self.factor >= 1:
            raise errors.UsageError("backoff needs 0 < base <= cap and factor >= 1")

    def bound(self, attempt: int) -> float:
        """The largest delay attempt number ``attempt`` (0 the first) may wait."""
        # Clamp the exponent: factor ** 1000 overflows a float long before
        # anyone retries that often, and the cap is reached much sooner.
        return min(self.cap, self.base * self.factor ** min(attempt, 64))


class Backoff:
    """The delays of one sequence of attempts under a :class:`BackoffPolicy`.

    ::

        backoff = Backoff(BackoffPolicy(base=0.1, cap=5))
        while True:
            try:
                await connect()
            except OSError:
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()
    """

    def __init__(
        self, policy: BackoffPolicy | None = None, *, rand: Callable[[], float] = random.random
    ) -> None:
        self.policy = policy or BackoffPolicy()
        #: Failed attempts since the last success.
        self.attempt = 0
        self._rand = rand

    def next_delay(self) -> float:
        """The pause before the next attempt (seconds); counts one more failure."""
        bound = self.policy.bound(self.attempt)
        self.attempt += 1
        return bound * self._rand()

    def reset(self) -> None:
        """Something worked: the next failure starts again from ``base``."""
        self.attempt = 0
