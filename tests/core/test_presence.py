"""Presence in the core (``hub.presence``), with no server: entries, events, expiry.

The multi-node tests run two or three hubs on one shared store (one
:class:`MemoryEngine` shared by the hubs, or one Redis key prefix), each hub
with a clock of its own, so a node can be made to stall while the others go
on; the Rules are those of :mod:`hubbub.core.presence`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hubbub.config import Config, ConfigError
from hubbub.core import Hub
from hubbub.core.presence import MAX_PRESENT_TOPIC, check_client
from hubbub.engines import open_engine
from hubbub.engines.base import Engine
from hubbub.engines.memory import MemoryEngine
from hubbub.protocol.errors import InvalidRequest, InvalidTopic, NotFound
from tests.conftest import ENGINES, session_redis, store_url

#: Long enough that no background renewal runs during a test: the tests tick.
TTL = 60.0
T0 = 1_700_000_000_000


def config() -> Config:
    return Config.from_dict({
        "namespaces": {"chat": {"presence": True}},
        "server": {"presence_ttl": TTL},
    })


@pytest.fixture(params=ENGINES)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    async with Hub(open_engine(store_url(request.param, tmp_path)), config()) as h:
        yield h


async def events(hub: Hub, topic: str) -> list[dict[str, Any]]:
    """Every presence event of ``topic``, read from its events topic."""
    page = await hub.poll([f"presence.{topic}"], after="start", limit=1000)
    return [m.value() for m in page.messages]


async def test_join_and_leave_are_events_and_entries(hub: Hub) -> None:
    """A join writes an entry and a join event; the last leave removes both, said once."""
    member = hub.presence.member()
    topics = hub.presence.topics(["chat.room1", "chat.*", "chat.room1", "news.a"])
    assert topics == ["chat.room1"]  # patterns and namespaces without presence do not count
    await member.join(topics, "alice", {"name": "Alice"})
    await member.join(topics, "alice", {"name": "Alice"})  # a second subscription: one entry
    listed = await hub.presence.present("chat.room1")
    assert listed["count"] == 1 and listed["topic"] == "chat.room1"
    (entry,) = listed["present"]
    assert entry == {"conn": member.conn, "client": "alice", "info": {"name": "Alice"},
                     "since": entry["since"]}
    await member.leave(topics, "unsub")
    assert (await hub.presence.present("chat.room1"))["count"] == 1  # one subscription left
    await member.leave(topics, "unsub")
    assert (await hub.presence.present("chat.room1"))["present"] == []
    join, leave = await events(hub, "chat.room1")
    assert join == {"event": "join", "topic": "chat.room1", **entry}
    assert leave == {**join, "event": "leave", "reason": "unsub"}


async def test_close_leaves_everything_once(hub: Hub) -> None:
    """Closing a connection leaves each of its topics with reason closed; twice is harmless."""
    member = hub.presence.member()
    await member.join(["chat.a", "chat.b"], None, None)
    await member.close()
    await member.close()
    for topic in ("chat.a", "chat.b"):
        assert [(e["event"], e.get("reason")) for e in await events(hub, topic)] == [
            ("join", None), ("leave", "closed")]
        assert (await hub.presence.present(topic))["count"] == 0


async def test_presence_off_and_bad_topics(hub: Hub) -> None:
    """No presence list where presence is off; topics too long for an events topic are refused."""
    with pytest.raises(NotFound) as info:
        await hub.presence.present("news.a")
    assert info.value.field == "topic"
    with pytest.raises(InvalidTopic):
        await hub.presence.present("chat..a")
    assert hub.presence.topics(["chat." + "x" * (MAX_PRESENT_TOPIC - 5)]) != []
    with pytest.raises(InvalidTopic):
        hub.presence.topics(["chat." + "x" * (MAX_PRESENT_TOPIC - 4)])


@pytest.mark.parametrize(("client", "info", "field"), [
    ("", None, "client"), ("x" * 65, None, "client"), ("a\nb", None, "client"),
    (5, None, "client"), (None, "x" * 2000, "info"), (None, {"k": object()}, "info"),
])
def test_bad_client_and_info(client: Any, info: Any, field: str) -> None:
    """What a client says about itself is bounded; the error names the field."""
    with pytest.raises(InvalidRequest) as exc:
        check_client(client, info)
    assert exc.value.field == field


def test_good_client_and_info() -> None:
    assert check_client("émile@host", {"a": [1, 2]}) == ("émile@host", {"a": [1, 2]})
    assert check_client(None, None) == (None, None)


# -- several nodes on one store --------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def shared_store(request: pytest.FixtureRequest) -> Callable[[], Engine]:
    """Engines of several nodes on one store."""
    if request.param == "memory":
        engine = MemoryEngine()
        return lambda: engine
    url = session_redis().store()
    return lambda: open_engine(url)


class Node:
    """A hub with a clock of its own (ms)."""

    def __init__(self, engine: Engine) -> None:
        self.now = T0
        self.hub = Hub(engine, config(), clock=lambda: self.now / 1000)


@pytest.fixture
async def nodes(shared_store: Callable[[], Engine]) -> AsyncIterator[list[Node]]:
    nodes = [Node(shared_store()) for _ in range(3)]
    for n in nodes:
        await n.hub.start()
    yield nodes
    for n in nodes:
        await n.hub.stop()


async def test_a_dead_nodes_entry_expires_with_one_leave(nodes: list[Node]) -> None:
    """Entries are shared; when their node stops renewing, one sweeper says leave, once."""
    a, b, c = nodes
    member = a.hub.presence.member()
    await member.join(["chat.x"], "alice", None)
    assert [e["conn"] for e in (await b.hub.presence.present("chat.x"))["present"]] == [
        member.conn]
    # Renewed in time, the entry lives past its first expiry.
    step = int(TTL * 1000 * 2 / 3)
    for n in nodes:
        n.now += step
    await a.hub.presence.tick()
    for n in nodes:
        n.now += step
    assert await b.hub.presence.sweep() == 0
    assert (await b.hub.presence.present("chat.x"))["count"] == 1
    # Node a stops renewing (it died): past the expiry, b and c sweep; one leave.
    b.now = c.now = a.now + int(TTL * 1000) + 1
    swept = [await b.hub.presence.sweep(), await c.hub.presence.sweep()]
    assert sorted(swept) == [0, 1]
    assert (await c.hub.presence.present("chat.x"))["count"] == 0
    evs = await events(b.hub, "chat.x")
    assert [(e["event"], e.get("reason")) for e in evs] == [("join", None), ("leave", "expired")]
    assert evs[1]["conn"] == member.conn and evs[1]["client"] == "alice"


async def test_a_stalled_node_comes_back_and_says_join_again(nodes: list[Node]) -> None:
    """Invariant "a lost entry comes back": a node finding its entry swept by another writes it again and says join;
    one whose lapsed entry nobody swept takes it back silently."""
    a, b, _ = nodes
    member = a.hub.presence.member()
    await member.join(["chat.y"], None, None)
    lapse = int(TTL * 1000) + 1
    # Lapsed, not swept: a takes it back, nothing said.
    a.now += lapse
    await a.hub.presence.tick()
    b.now = a.now
    assert (await b.hub.presence.present("chat.y"))["count"] == 1
    assert [e["event"] for e in await events(a.hub, "chat.y")] == ["join"]
    # Lapsed and swept by b: leave (expired), then a's renewal says join again.
    b.now = a.now + lapse
    assert await b.hub.presence.sweep() == 1
    a.now = b.now
    await a.hub.presence.tick()
    assert [e["conn"] for e in (await b.hub.presence.present("chat.y"))["present"]] == [
        member.conn]
    assert [(e["event"], e.get("reason")) for e in await events(a.hub, "chat.y")] == [
        ("join", None), ("leave", "expired"), ("join", None)]
    await member.close()
    assert [e["event"] for e in await events(a.hub, "chat.y")][-1] == "leave"


async def test_a_stopping_node_says_leave(nodes: list[Node]) -> None:
    """A hub that shuts down cleanly removes its entries with leave events (reason closed)."""
    a, b, _ = nodes
    await a.hub.presence.member().join(["chat.z"], None, None)
    await a.hub.stop()
    assert (await b.hub.presence.present("chat.z"))["count"] == 0
    assert [(e["event"], e.get("reason")) for e in await events(b.hub, "chat.z")] == [
        ("join", None), ("leave", "closed")]


@pytest.mark.parametrize("raw", [
    {"namespaces": {"chat": {"presence": 1}}},
    {"defaults": {"presence": "yes"}},
    {"server": {"presence_ttl": 0}},
    {"server": {"presence_ttl": "soon"}},
])
def test_bad_presence_settings(raw: dict[str, Any]) -> None:
    """presence is true or false; presence_ttl a positive duration."""
    with pytest.raises(ConfigError):
        Config.from_dict(raw)


def test_presence_settings() -> None:
    cfg = Config.from_dict({"defaults": {"presence": True}, "namespaces": {"x": {}},
                            "server": {"presence_ttl": "2m"}})
    assert cfg.for_topic("x.a").presence and cfg.for_topic("y.a").presence
    assert cfg.server.presence_ttl == 120
    assert not Config().for_topic("chat.a").presence
    assert Config().for_topic("presence.chat.a").history_size == 1000
