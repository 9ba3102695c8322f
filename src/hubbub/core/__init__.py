"""The hub core: topics, cursors, fan-out and subscriptions (asyncio, no HTTP)."""

from .hub import Hub, Page, PublishItem
from .subscription import Gap, Subscription
from .values import AppendResult, GroupInfo, Lease

__all__ = ["AppendResult", "Gap", "GroupInfo", "Hub", "Lease", "Page", "PublishItem",
           "Subscription"]
