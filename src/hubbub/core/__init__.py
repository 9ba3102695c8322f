"""The hub core: topics, cursors, fan-out and subscriptions (asyncio, no HTTP)."""

from .hub import Hub, Page, PublishItem
from .subscription import Gap, Subscription

__all__ = ["Gap", "Hub", "Page", "PublishItem", "Subscription"]
