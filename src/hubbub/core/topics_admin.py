"""What operators do to a topic's log as a whole: purge it, delete it.

* **Purge** removes every retained message and keeps the log: offsets go on
  from where they were, the epoch stays. A reader whose cursor is older gets
  a ``trimmed`` gap, as after retention (it is retention down to nothing).
* **Delete** removes the log itself: the next message starts a new epoch at
  offset 1. A reader whose cursor is of the old epoch gets an ``epoch`` gap
  (``409`` on a single-topic poll), as after a lost log. Live subscriptions
  naming the topic, on every node, are ended with the cursor to resume from
  (a WebSocket closes with 1013, an SSE stream sends ``error``), and
  resuming from it says that gap. Subscriptions by pattern, or over several
  topics, go on: their cursors are positions in the store, which the new
  log's messages come after.
"""

from __future__ import annotations

from ..engines.base import Retention
from ..protocol.errors import NotFound
from ..protocol.topics import validate_topic
from .ports import WithOrders

_KEEP = Retention()
_NOTHING = Retention(max_messages=0)


async def purge(hub: WithOrders, topic: str) -> int:
    """Remove every retained message of ``topic``; how many were removed.

    Raises:
        InvalidTopic: a malformed name.
        NotFound: the topic was never written.
    """
    validate_topic(topic)
    if await hub.engine.topic(topic) is None:
        raise NotFound(f"no topic {topic}", field="topic")
    return await hub.engine.trim(lambda name: _NOTHING if name == topic else _KEEP, hub.now())


async def delete(hub: WithOrders, topic: str) -> None:
    """Remove the log of ``topic``; end its live subscriptions on every node.

    Raises:
        InvalidTopic: a malformed name.
        NotFound: the topic has no log.
    """
    validate_topic(topic)
    if not await hub.engine.delete_topic(topic):
        raise NotFound(f"no topic {topic}", field="topic")
    await hub.connections.order({"reset": topic})
