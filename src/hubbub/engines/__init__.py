"""Storage engines behind one interface (:class:`hubbub.engines.base.Engine`)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from .base import Engine


def open_engine(url: str) -> Engine:
    """Make (not yet open) the engine a store URL names.

    ``memory://`` keeps everything in this process; ``sqlite:///PATH`` (three
    slashes, then a relative path, or four for an absolute one) is the embedded
    durable store; ``?synchronous=full`` makes its commits survive power loss
    too (the default, ``normal``, survives a crash of the process).
    ``redis://[:PASSWORD@]HOST:PORT/DB`` (or ``rediss://`` for TLS) keeps the
    logs in Redis, shared by every node that names the same Redis and
    ``?prefix=`` (default ``hubbub``); see ``docs/cluster.md``.

    Raises:
        ValueError: the URL names no known engine, or one whose extra is not
            installed (the message names it: ``hubbub[redis]``).
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
    if scheme in ("redis", "rediss"):
        try:
            from .redis import RedisEngine
        except ModuleNotFoundError as exc:
            # The redis client is an extra: a hub on SQLite must not need it.
            if exc.name is None or exc.name.split(".")[0] != "redis":
                raise
            raise ValueError(f"{scheme}:// stores need the redis package: "
                             "pip install 'hubbub[redis]'") from None

        parsed = urlparse(url)
        query = parse_qs(parsed.query, keep_blank_values=True)
        prefix = query.pop("prefix", ["hubbub"])[-1]
        if re.fullmatch(r"[\w.:-]{1,64}", prefix, re.ASCII) is None:
            raise ValueError("redis store URL: ?prefix= takes 1-64 of A-Z a-z 0-9 _ . : -")
        rest = "&".join(f"{k}={v}" for k, vs in query.items() for v in vs)
        return RedisEngine(parsed._replace(query=rest).geturl(), prefix=prefix)
    raise ValueError(
        f"unknown store URL {url!r}: use memory://, sqlite:///PATH or redis://HOST:PORT/DB")
