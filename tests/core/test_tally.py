"""Connections and subscriptions held per principal: :mod:`hubbub.core.tally`, no loop."""

from __future__ import annotations

import pytest

from hubbub.config import LimitsConfig
from hubbub.core.auth import Principal
from hubbub.core.tally import Tally
from hubbub.protocol.errors import LimitExceeded
from hubbub.protocol.topics import TopicFilter

CONNS, SUBS = "connections_per_principal", "subscriptions_per_principal"


def principal(subject: str | None, *, admin: bool = False) -> Principal:
    return Principal(subject, TopicFilter([">"]), TopicFilter([">"]), admin=admin)


def tally(connections: int = 2, subscriptions: int = 3, enabled: bool = True) -> Tally:
    limits = LimitsConfig(connections_per_principal=connections,
                          subscriptions_per_principal=subscriptions)
    return Tally(limits, enabled)


def test_a_subject_is_refused_past_its_connections_and_counted_again_once_one_ends() -> None:
    """The third connection of a subject allowed two is refused; a released one frees a place."""
    t = tally(connections=2)
    first = t.hold(principal("ann"), "10.0.0.1")
    t.hold(principal("ann"), "10.0.0.2")
    with pytest.raises(LimitExceeded) as refused:
        t.hold(principal("ann"), "10.0.0.3")
    assert refused.value.extra["limit"] == CONNS
    assert "at most 2 per principal" in str(refused.value)
    assert t.held("subject ann", CONNS) == 2
    first.release()
    first.release()  # a second release gives nothing back
    assert t.held("subject ann", CONNS) == 1
    t.hold(principal("ann"), "10.0.0.3")
    t.hold(principal("bob"), "10.0.0.3")  # another subject counts apart


def test_no_subject_counts_by_address() -> None:
    """The anonymous grant is counted per client address."""
    t = tally(connections=1)
    t.hold(principal(None), "10.0.0.1")
    t.hold(principal(None), "10.0.0.2")
    with pytest.raises(LimitExceeded):
        t.hold(principal(None), "10.0.0.1")
    assert t.held("address 10.0.0.1", CONNS) == 1


@pytest.mark.parametrize("enabled, admin", [(False, False), (True, True)])
def test_admins_and_a_hub_without_authentication_are_not_counted(
        enabled: bool, admin: bool) -> None:
    """With authentication off, or for an admin credential, nothing is held or refused."""
    t = tally(connections=1, subscriptions=1, enabled=enabled)
    holds = [t.hold(principal("ops", admin=admin), "10.0.0.1") for _ in range(3)]
    assert all(h.key is None for h in holds)
    holds[0].subscribe(5)
    assert holds[0].subscriptions == 0
    assert t.held("subject ops", CONNS) == 0


def test_subscriptions_are_counted_per_principal_across_connections() -> None:
    """Subscriptions of all of a subject's connections add up to one limit."""
    t = tally(subscriptions=3)
    a, b = t.hold(principal("ann"), None), t.hold(principal("ann"), None)
    a.subscribe(2)
    with pytest.raises(LimitExceeded) as refused:
        b.subscribe(2)
    assert refused.value.extra["limit"] == SUBS
    assert b.subscriptions == 0  # a refused subscribe holds nothing
    b.subscribe()
    assert t.held("subject ann", SUBS) == 3


def test_unsubscribe_gives_back_no_more_than_was_taken() -> None:
    """Giving back more than a connection holds frees only what it held."""
    t = tally(subscriptions=3)
    a, b = t.hold(principal("ann"), None), t.hold(principal("ann"), None)
    a.subscribe(1)
    b.subscribe(2)
    a.unsubscribe(5)
    assert a.subscriptions == 0
    assert t.held("subject ann", SUBS) == 2


def test_release_gives_back_the_connection_and_its_subscriptions() -> None:
    """After a release the principal holds nothing, and later calls change nothing."""
    t = tally()
    hold = t.hold(principal("ann"), None)
    hold.subscribe(3)
    hold.release()
    assert t.held("subject ann", SUBS) == 0 and t.held("subject ann", CONNS) == 0
    hold.subscribe(3)
    hold.unsubscribe(1)
    assert t.held("subject ann", SUBS) == 0


def test_a_limit_of_zero_is_off() -> None:
    """0 turns a limit off."""
    t = tally(connections=0, subscriptions=0)
    holds = [t.hold(principal("ann"), None) for _ in range(50)]
    holds[0].subscribe(10_000)
    assert t.held("subject ann", CONNS) == 50
