"""Records on the Redis engine: the Lua scripts of put, delete, scan and expire.

Invariants
----------
"one script per write": ``put``, ``delete`` and ``expire`` each run as ONE
    Lua script, so a compare-and-set reads the version and writes in one
    step that no other node can interleave with, and an expiry sweep removes
    and returns each expired record once: when several nodes sweep, each
    record reaches exactly one of them.
"hubbub decides expiry": Expiry is hubbub's, not Redis's. A record past its
    ``expires`` stays stored (no PEXPIREAT) until a sweep returns it, so
    that the sweeper can act on it (publish a presence leave, delete an
    upload's file); every read treats it as absent meanwhile, as the engine
    contract says.

Trade-offs
----------
"sweeps stay within a kind": Scans and sweeps stay within a kind. The kind
    is the part of the key before its first ``/`` and every prefix names one
    (``"job/"``, ``"presence/room.1/"``); each kind has its own index sets,
    so a sweep of one kind never walks the records of another.

Layout (``P`` is the store's key prefix, ``K`` a kind, ``key`` a whole key)::

    P:r:key   hash  v (value), n (version), x (expires in ms, or "")
    P:rk:K    zset  every key of the kind, score 0 (ordered by key for scans)
    P:rx:K    zset  the kind's keys that have an expiry, scored by it

Cost: a put or delete is O(log N) in the kind's N records; a scan O(log N)
plus the records it reads; a sweep O(log N + E log E) for E expired records
of the kind (bounded in practice by sweeping often).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from .base import Record
from .base import record_kind as kind_of

# Is the record (fields n, x read into cur) live at now? Defined in each script.
_LIVE: Final = """
local function live(cur, now)
  return cur[1] and (cur[2] == '' or tonumber(cur[2]) > now)
end
"""

PUT: Final = _LIVE + """
local P, key, value, now, expires, ifv, kind =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local rk = P .. ':r:' .. key
local cur = redis.call('HMGET', rk, 'n', 'x')
local version = 0
if live(cur, now) then version = tonumber(cur[1]) end
if ifv ~= '' and tonumber(ifv) ~= version then return false end
version = version + 1
redis.call('HSET', rk, 'v', value, 'n', version, 'x', expires)
redis.call('ZADD', P .. ':rk:' .. kind, 0, key)
if expires == '' then
  redis.call('ZREM', P .. ':rx:' .. kind, key)
else
  redis.call('ZADD', P .. ':rx:' .. kind, expires, key)
end
return version
"""

DELETE: Final = _LIVE + """
local P, key, now, ifv, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local rk = P .. ':r:' .. key
local cur = redis.call('HMGET', rk, 'n', 'x')
if not live(cur, now) then return 0 end
if ifv ~= '' and tonumber(ifv) ~= tonumber(cur[1]) then return 0 end
redis.call('DEL', rk)
redis.call('ZREM', P .. ':rk:' .. kind, key)
redis.call('ZREM', P .. ':rx:' .. kind, key)
return 1
"""

# Reply: key, value, version, expires, ... for the live records in key order.
SCAN: Final = _LIVE + """
local P, prefix, now, limit, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  ARGV[5]
local out, offset, page = {}, 0, math.max(limit, 100)
while #out < 4 * limit do
  local keys = redis.call('ZRANGEBYLEX', P .. ':rk:' .. kind, '[' .. prefix,
    '[' .. prefix .. '\\255', 'LIMIT', offset, page)
  for _, key in ipairs(keys) do
    local cur = redis.call('HMGET', P .. ':r:' .. key, 'n', 'x', 'v')
    if live(cur, now) then
      out[#out + 1] = key
      out[#out + 1] = cur[3]
      out[#out + 1] = cur[1]
      out[#out + 1] = cur[2]
      if #out >= 4 * limit then break end
    end
  end
  if #keys < page then break end
  offset = offset + page
end
return out
"""

# Reply: as SCAN's, for the records it removed.
EXPIRE: Final = """
local P, prefix, now, limit, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  ARGV[5]
local rx = P .. ':rx:' .. kind
local due = redis.call('ZRANGEBYSCORE', rx, '-inf', now)
local keys = {}
for _, key in ipairs(due) do
  if string.sub(key, 1, #prefix) == prefix then keys[#keys + 1] = key end
end
table.sort(keys)
local out = {}
for i = 1, math.min(#keys, limit) do
  local key = keys[i]
  local rk = P .. ':r:' .. key
  local cur = redis.call('HMGET', rk, 'n', 'x', 'v')
  redis.call('DEL', rk)
  redis.call('ZREM', P .. ':rk:' .. kind, key)
  redis.call('ZREM', rx, key)
  if cur[1] then
    out[#out + 1] = key
    out[#out + 1] = cur[3]
    out[#out + 1] = cur[1]
    out[#out + 1] = cur[2]
  end
end
return out
"""

SCRIPTS: Final = {"RPUT": PUT, "RDELETE": DELETE, "RSCAN": SCAN, "REXPIRE": EXPIRE}

#: ``script(name, args)``: run one registered script, store trouble as Unavailable.
RunScript = Callable[[str, list[Any]], Awaitable[Any]]
#: ``call(fn)``: run one command on the engine's client, store trouble as Unavailable.
RunCall = Callable[[Callable[[Any], Any]], Awaitable[Any]]


def _expires(raw: bytes | None) -> int | None:
    return int(raw) if raw else None


def _records(reply: list[Any]) -> list[Record]:
    return [Record(reply[i].decode(), bytes(reply[i + 1]), int(reply[i + 2]),
                   _expires(reply[i + 3])) for i in range(0, len(reply), 4)]


class RedisRecords:
    """The record methods of :class:`~hubbub.engines.redis.RedisEngine`."""

    def __init__(self, prefix: str, script: RunScript, call: RunCall) -> None:
        self.prefix, self._script, self._call = prefix, script, call

    async def get(self, key: str, now: int) -> Record | None:
        """See :meth:`hubbub.engines.base.Engine.get`."""
        kind_of(key)
        v, n, x = await self._call(lambda r: r.hmget(f"{self.prefix}:r:{key}", "v", "n", "x"))
        if n is None or (x and int(x) <= now):
            return None
        return Record(key, bytes(v), int(n), _expires(x))

    async def put(self, key: str, value: bytes, now: int, *, expires: int | None = None,
                  if_version: int | None = None) -> Record | None:
        """See :meth:`hubbub.engines.base.Engine.put`."""
        args = [self.prefix, key, bytes(value), now, "" if expires is None else expires,
                "" if if_version is None else if_version, kind_of(key)]
        version = await self._script("RPUT", args)
        return None if version is None else Record(key, bytes(value), int(version), expires)

    async def delete(self, key: str, now: int, *, if_version: int | None = None) -> bool:
        """See :meth:`hubbub.engines.base.Engine.delete`."""
        args = [self.prefix, key, now, "" if if_version is None else if_version, kind_of(key)]
        return bool(await self._script("RDELETE", args))

    async def scan(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        """See :meth:`hubbub.engines.base.Engine.scan`."""
        if limit <= 0:
            return []
        reply = await self._script("RSCAN", [self.prefix, prefix, now, limit, kind_of(prefix)])
        return _records(reply)

    async def expire(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        """See :meth:`hubbub.engines.base.Engine.expire`."""
        if limit <= 0:
            return []
        reply = await self._script("REXPIRE", [self.prefix, prefix, now, limit, kind_of(prefix)])
        return _records(reply)
