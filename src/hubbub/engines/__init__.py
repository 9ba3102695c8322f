"""Storage engines behind one interface (:class:`hubbub.engines.base.Engine`)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from .base import Engine


def open_engine(url: str) -> Engine:
    """Make (not yet open) the engine a store URL names.

    ``memory://`` keeps everything in this process; ``sqlite:///PATH`` (three
    slashes, then a relative path, or four for an absolute one) is the embedded
    durable store; ``?synchronous=full`` makes its commits survive power loss
    too (the default, ``normal``, survives a crash of the process).

    Raises:
        ValueError: the URL names no known engine.
    """
    scheme = urlparse(url).scheme
    if scheme == "memory":
        from .memory import MemoryEngine

        return MemoryEngine()
    if scheme == "sqlite":
        from .sqlite import SQLiteEngine

        parsed = urlparse(url)
        path = parsed.path[1:] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError("sqlite store URL needs a path: sqlite:///PATH")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        sync = options.pop("synchronous", "normal").upper()
        if options or sync not in ("NORMAL", "FULL"):
            raise ValueError("sqlite store URL takes only ?synchronous=normal|full")
        return SQLiteEngine(path, synchronous=sync)
    raise ValueError(f"unknown store URL {url!r}: use memory:// or sqlite:///PATH")
