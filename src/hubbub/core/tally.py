"""Connections and subscriptions held per principal (``[limits]``, no HTTP).

A WebSocket or an SSE stream :meth:`~Tally.hold` s a place for its principal
as it opens, and more places as it subscribes; it gives them back as it ends.
Past ``connections_per_principal`` or ``subscriptions_per_principal`` the
door refuses with :class:`~hubbub.protocol.errors.LimitExceeded` (429, or
close 4029 on a WebSocket that authenticated in its first frame).

Rules:

* Only with authentication on: with it off every client is the same
  principal, and the hub-wide limits of the store and the server apply.
* A principal is its credential's subject; the anonymous grant (and a
  credential with no subject) counts by the client's address. Admin
  credentials are not counted: they are the operators'.
* Counts are this node's: behind a load balancer, each node allows the limit.
"""

from __future__ import annotations

from collections import Counter

from ..config import LimitsConfig
from ..protocol.errors import LimitExceeded
from .auth import Principal


class Hold:
    """The places one connection holds: give them back with :meth:`release`."""

    __slots__ = ("_tally", "key", "subscriptions", "_released")

    def __init__(self, tally: Tally, key: str | None) -> None:
        self._tally = tally
        #: Whom the places are counted for; ``None``: nobody counts them.
        self.key = key
        self.subscriptions = 0
        self._released = False

    def subscribe(self, n: int = 1) -> None:
        """Take ``n`` more subscriptions.

        Raises:
            LimitExceeded: the principal holds ``subscriptions_per_principal``.
        """
        if self.key is None or self._released:
            return
        self._tally.take(self.key, "subscriptions_per_principal", n)
        self.subscriptions += n

    def unsubscribe(self, n: int = 1) -> None:
        """Give ``n`` subscriptions back."""
        if self.key is None or self._released:
            return
        n = min(n, self.subscriptions)
        self.subscriptions -= n
        self._tally.give(self.key, "subscriptions_per_principal", n)

    def release(self) -> None:
        """Give back the connection and its subscriptions (once; later calls do nothing)."""
        if self.key is None or self._released:
            return
        self._released = True
        self._tally.give(self.key, "subscriptions_per_principal", self.subscriptions)
        self._tally.give(self.key, "connections_per_principal", 1)


class Tally:
    """Who holds how many connections and subscriptions on this node."""

    def __init__(self, limits: LimitsConfig, enabled: bool) -> None:
        self._limits = limits
        self._enabled = enabled
        self._held: dict[str, Counter[str]] = {
            "connections_per_principal": Counter(), "subscriptions_per_principal": Counter()}

    def hold(self, principal: Principal, peer: str | None) -> Hold:
        """A place for a new connection of ``principal`` (from address ``peer``).

        Raises:
            LimitExceeded: the principal holds ``connections_per_principal``.
        """
        if not self._enabled or principal.admin:
            return Hold(self, None)
        key = f"subject {principal.subject}" if principal.subject else f"address {peer}"
        self.take(key, "connections_per_principal", 1)
        return Hold(self, key)

    def held(self, key: str, limit: str) -> int:
        """How many of ``limit``'s kind ``key`` holds (for tests and metrics)."""
        return self._held[limit][key]

    def take(self, key: str, limit: str, n: int) -> None:
        most: int = getattr(self._limits, limit)
        counts = self._held[limit]
        if most and counts[key] + n > most:
            what = limit.removesuffix("_per_principal")
            raise LimitExceeded(f"too many {what}: at most {most} per principal",
                                limit=limit)
        counts[key] += n

    def give(self, key: str, limit: str, n: int) -> None:
        counts = self._held[limit]
        counts[key] -= n
        if counts[key] <= 0:
            del counts[key]


__all__ = ["Hold", "Tally"]
