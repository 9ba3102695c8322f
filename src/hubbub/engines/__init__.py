"""Storage engines behind one interface (:class:`hubbub.engines.base.Engine`)."""

from __future__ import annotations

from urllib.parse import urlparse

from .base import Engine


def open_engine(url: str) -> Engine:
    """Make (not yet open) the engine a store URL names.

    ``memory://`` keeps everything in this process; ``sqlite:///PATH`` (three
    slashes, then a relative path, or four for an absolute one) is the embedded
    durable store.

    Raises:
        ValueError: the URL names no known engine.
    """
    scheme = urlparse(url).scheme
    if scheme == "memory":
        from .memory import MemoryEngine

        return MemoryEngine()
    if scheme == "sqlite":
        from .sqlite import SQLiteEngine

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError("sqlite store URL needs a path: sqlite:///PATH")
        return SQLiteEngine(path)
    raise ValueError(f"unknown store URL {url!r}: use memory:// or sqlite:///PATH")
