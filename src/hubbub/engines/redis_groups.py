"""Consumer groups on the Redis engine: the Lua scripts of create, claim and
settle, and the parsing of their replies.

Invariants
----------
"one script per operation": ``claim`` and ``settle`` each run as ONE Lua
    script (EVALSHA), so they are atomic and serialized with every other
    script on the store, the appends of every node included: two nodes
    pulling from one group never lease a message twice. The decisions are
    :mod:`hubbub.protocol.leases`'s invariants, written in Lua (the scripts
    cannot call Python); the contract suite and a seeded random run against
    the memory engine (the reference) check that they agree.
"dead letters are appends": A claim that finds an entry past
    ``max_deliver`` removes it and appends its message to ``dlq.<group>``
    with the append code of every append
    (:data:`~hubbub.engines.redis_scripts.APPEND_FNS`), in the same script:
    positions, topic creation and the fan-out frame are those of any
    publish, so the dead letters reach every node's listeners through the
    fan-out link, and ``claim()`` answers once its own node fed them (as
    ``append()`` does: :mod:`hubbub.engines.redis`, invariant
    "answered after fed"). The payload is :func:`hubbub.protocol.leases.dead_letter_payload`'s,
    byte for byte (``dead_payload`` below; a test compares the two).
"checks before writes": A script that refuses (no such group, or a
    dead-letter topic to create whose epoch candidate is taken) returns
    before it writes anything.

Trade-offs
----------
"bounded work per claim": A claim dead-letters at most ``MAX_DEAD``
    entries; when it reaches that, it stops there (no new messages) and the
    next claim goes on. The memory engine has no such bound: only a claim
    meeting more than ``MAX_DEAD`` exhausted entries differs.

Layout (``P`` is the store's key prefix, ``G`` the group)::

    P:g:G    hash  patterns (JSON list), delivered_seq, created, due
    P:ge:G   hash  seq -> pending entry, MessagePack [attempts, deadline,
                   topic, offset, lease id or false, last error or false]
    P:gd:G   zset  seq, scored by deadline: every pending entry
    P:gr:G   zset  seq, scored by seq: the entries whose deadline <= due

``due`` is a watermark: the largest ``now`` a claim has seen. ``P:gr`` holds
exactly the entries with ``deadline <= due``: a claim first moves the entries
of ``P:gd`` with deadline in ``(due, now]`` into it (each entry once per time
it falls due) and raises ``due`` to ``now``; a settle or a lease that sets a
deadline puts the entry in or out of it. So the due entries, oldest seq
first (:mod:`hubbub.protocol.leases`, invariants "due at the deadline" and
"due entries first"), are read from the front of
``P:gr`` a page at a time, skipping only entries not due by this claim's
clock (a node whose clock is behind another's), and ``next_due`` is the front
of ``P:gd``.

Cost of a claim, for a group with N pending entries: O(log N) per entry it
takes, leases, drops or moves into ``P:gr``; plus the read of new messages,
:data:`~hubbub.engines.redis_scripts.READ_SEQ_FN`: for T claimed topics of
which A have messages after ``delivered_seq``, min(T, A) topic look-ups, a
binary search of about log2(retained) one-entry XRANGEs per topic with news,
and one XRANGE of at most ``max_messages`` entries per topic visited in seq
order. A group that keeps up has few topics with news per claim, so a
pattern matching thousands of quiet topics costs one ZCOUNT and a Lua set
of their names. Redis runs nothing else meanwhile: keep ``max_messages``
(at most 1000 through the API) and the topic list (100 patterns) bounded.
A settle costs O(log N) per lease id.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal

from ..protocol.cursor import new_epoch
from ..protocol.errors import NotFound, Unavailable
from ..protocol.leases import Outcome, dead_letter_topic, parse_lease_id
from ..protocol.message import JSON, Message
from .base import AppendResult, Claim, GroupInfo, Lease
from .redis_scripts import APPEND_FNS, READ_SEQ_FN, SEQ_AT
from .redis_wire import message

#: Most entries one claim dead-letters (trade-off "bounded work per claim").
MAX_DEAD: Final = 1000
#: Positions are Lua doubles in the scripts: exact below 2**53.
MAX_SAFE: Final = 2**53 - 1

#: Lua: the keys of a group, and how its entries are stored and removed.
_ENTRIES: Final = r"""
local function group_keys(P, name)
  return {g = P .. ':g:' .. name, e = P .. ':ge:' .. name, d = P .. ':gd:' .. name,
          r = P .. ':gr:' .. name}
end

-- Store entry e of seq s (a string); it is in gr exactly when its deadline <= wm.
local function put_entry(ks, s, e, wm)
  redis.call('HSET', ks.e, s, cmsgpack.pack(e))
  redis.call('ZADD', ks.d, string.format('%d', e[2]), s)
  if wm and e[2] <= wm then
    redis.call('ZADD', ks.r, s, s)
  else
    redis.call('ZREM', ks.r, s)
  end
end

local function drop_entry(ks, s)
  redis.call('HDEL', ks.e, s)
  redis.call('ZREM', ks.d, s)
  redis.call('ZREM', ks.r, s)
end
"""

#: Lua: ``dead_payload``, hubbub.protocol.leases.dead_letter_payload for a stream entry,
#: byte for byte (msgspec's JSON: compact, control characters escaped as
#: \b \t \n \f \r or \u00XX, everything else as it is).
_DEAD_PAYLOAD: Final = r"""
local ESC = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\t'] = '\\t',
             ['\n'] = '\\n', ['\f'] = '\\f', ['\r'] = '\\r'}
for c = 0, 31 do
  local ch = string.char(c)
  if not ESC[ch] then ESC[ch] = string.format('\\u%04x', c) end
end

local function json_str(s)
  return '"' .. (string.gsub(s, '[%z\1-\31"\\]', ESC)) .. '"'
end

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(i) return string.sub(B64, i + 1, i + 1) end

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64(math.floor(n / 262144)) .. b64(math.floor(n / 4096) % 64)
      .. (b and b64(math.floor(n / 64) % 64) or '=') .. (c and b64(n % 64) or '=')
  end
  return table.concat(out)
end

-- entry: {'OFFSET-SEQ', {'t', time, 'i', id, 'c', content type, 'd', data}}
local function dead_payload(group, topic, epoch, entry, attempts, err)
  local offset, seq = string.match(entry[1], '^(%d+)-(%d+)$')
  local f = entry[2]
  local body = {'{"group":', json_str(group), ',"topic":', json_str(topic), ',"offset":', offset,
                ',"cursor":', json_str(epoch .. '.' .. offset .. '.' .. seq),
                ',"id":', json_str(f[4]), ',"time":', f[2],
                ',"attempts":', string.format('%d', attempts),
                ',"error":', err and json_str(err) or 'null'}
  if f[6] == '@JSON@' then
    body[#body + 1] = ',"data":' .. f[8] .. '}'
  else
    body[#body + 1] = ',"content_type":' .. json_str(f[6]) .. ',"data":"' .. base64(f[8]) .. '"}'
  end
  return table.concat(body)
end
""".replace("@JSON@", JSON)

#: ARGV: P, group, and to create it unless it exists: patterns (JSON), start
#: seq, now. Returns {} (no group) or {patterns, delivered_seq, created, pending}.
GROUP: Final = """#!lua
local P, name = ARGV[1], ARGV[2]
local g = P .. ':g:' .. name
if ARGV[3] and redis.call('EXISTS', g) == 0 then
  redis.call('HSET', g, 'patterns', ARGV[3], 'delivered_seq', ARGV[4], 'created', ARGV[5])
end
local h = redis.call('HMGET', g, 'patterns', 'delivered_seq', 'created')
if not h[1] then return {} end
return {h[1], h[2], h[3], redis.call('HLEN', P .. ':ge:' .. name)}
"""

#: ARGV: P, key_ttl_ms, store epoch candidate, group, its dead-letter topic,
#: an epoch candidate for it, horizon, max_messages, lease_ms, max_deliver,
#: now, lease id tokens (12 hex digits per possible lease), a 16 hex digit
#: salt for dead-letter message ids, MAX_DEAD, then the topics.
#: Returns {'!nogroup'} or {'!retry'} having written nothing, else
#: {'ok', {topic, epoch, ...}, leases: {lease id, attempts, deadline, topic
#: number (1-based), entry, ...}, dead: {epoch, offset, seq, id, payload, ...},
#: next_due or nil}.
CLAIM: Final = "#!lua\n" + SEQ_AT + APPEND_FNS + READ_SEQ_FN + _ENTRIES + _DEAD_PAYLOAD + r"""
local P, name, dlq = ARGV[1], ARGV[4], ARGV[5]
local horizon, max, lease_ms = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local max_deliver, snow, tokens, salt = tonumber(ARGV[10]), ARGV[11], ARGV[12], ARGV[13]
local now, max_dead = tonumber(snow), tonumber(ARGV[14])
local ks = group_keys(P, name)
-- Checks first, writes after (invariant "checks before writes").
local g = redis.call('HMGET', ks.g, 'delivered_seq', 'due')
if not g[1] then return {'!nogroup'} end
local fresh = new_topics(P, {dlq, '', -1, '@JSON@', '', '', snow, ARGV[6]}, 1, 1)
if not fresh then return {'!retry'} end

-- What fell due since the last claim joins gr (see the module docstring).
local wm = tonumber(g[2])
if not wm or now > wm then
  local lo = wm and '(' .. g[2] or '-inf'
  for _, s in ipairs(redis.call('ZRANGEBYSCORE', ks.d, lo, snow)) do
    redis.call('ZADD', ks.r, s, s)
  end
  wm = now
  redis.call('HSET', ks.g, 'due', snow)
end

local topics, numbers, leases, dead, dl = {}, {}, {}, {}, {}
local function topic_no(topic)
  local i = numbers[topic]
  if not i then
    topics[#topics + 1] = topic
    topics[#topics + 1] = redis.call('HGET', P .. ':t:' .. topic, 'epoch')
    i = #topics / 2
    numbers[topic] = i
  end
  return i
end
local function lease(s, attempts, deadline, topic, entry)
  local k = #leases / 5
  local id = s .. '.' .. string.sub(tokens, 12 * k + 1, 12 * k + 12)
  for _, v in ipairs({id, attempts, deadline, topic_no(topic), entry}) do
    leases[#leases + 1] = v
  end
  return id
end

-- Due entries first, oldest seq first.
local after, capped = '-inf', false
while #leases / 5 < max and not capped do
  local page = redis.call('ZRANGEBYSCORE', ks.r, after, '+inf', 'LIMIT', 0, max - #leases / 5)
  if #page == 0 then break end
  for _, s in ipairs(page) do
    after = '(' .. s
    local e = cmsgpack.unpack(redis.call('HGET', ks.e, s))
    if e[2] <= now then  -- else due only by a clock ahead of this claim's
      local off = string.format('%d', e[4])
      local entry = redis.call('XRANGE', P .. ':s:' .. e[3], off, off)[1]
      if not entry or string.match(entry[1], '-(%d+)$') ~= s then
        drop_entry(ks, s)  -- retention removed the message while it was pending
      elseif e[1] >= max_deliver then
        drop_entry(ks, s)
        local epoch = topics[2 * topic_no(e[3])]
        local k = #dl / 8
        local mid = string.sub(salt, 1, 8) .. string.format('%08x',
          (tonumber(string.sub(salt, 9, 16), 16) + k) % 4294967296)
        local payload = dead_payload(name, e[3], epoch, entry, e[1], e[6])
        for _, v in ipairs({dlq, '', -1, '@JSON@', payload, mid, snow, ARGV[6]}) do
          dl[#dl + 1] = v
        end
        if #dl / 8 >= max_dead then capped = true; break end
      else
        e[1], e[2] = e[1] + 1, now + lease_ms
        e[5] = lease(s, e[1], e[2], e[3], entry)
        put_entry(ks, s, e, wm)
      end
    end
  end
end

-- Then new messages up to the horizon, each a new entry on its first attempt.
local delivered = tonumber(g[1])
local last, room = delivered, max - #leases / 5
if room > 0 and horizon > delivered and not capped then
  local names = {}
  for i = 15, #ARGV do names[#names + 1] = ARGV[i] end
  local rtopics, found = read_seq(P, delivered, room, names)
  for _, f in ipairs(found) do
    if f[1] > horizon then break end
    local s, topic = string.format('%d', f[1]), rtopics[2 * f[2] - 1]
    local offset = tonumber(string.match(f[3][1], '^(%d+)-'))
    local deadline = now + lease_ms
    local id = lease(s, 1, deadline, topic, f[3])
    put_entry(ks, s, {1, deadline, topic, offset, id, false}, wm)
    last = f[1]
  end
  if #found < room and horizon > last then last = horizon end
end
if last ~= delivered then
  redis.call('HSET', ks.g, 'delivered_seq', string.format('%d', last))
end

-- Dead letters are appends like any other (invariant "dead letters are appends").
if #dl > 0 then
  local out = append(P, tonumber(ARGV[2]), ARGV[3], dl, 1, #dl / 8, fresh)
  for i = 0, #dl / 8 - 1 do
    for _, v in ipairs({out[3 + i * 4], out[4 + i * 4], out[5 + i * 4], dl[i * 8 + 6],
                        dl[i * 8 + 5]}) do
      dead[#dead + 1] = v
    end
  end
end
local first = redis.call('ZRANGE', ks.d, 0, 0, 'WITHSCORES')
return {'ok', topics, leases, dead, first[2] and tonumber(first[2]) or false}
""".replace("@JSON@", JSON)

#: ARGV: P, group, action, now, delay_ms, lease_ms, error ('' for none, else
#: '=' .. error), then per lease: seq, lease id. Returns {'!nogroup'} having
#: written nothing, else one code per lease: 0 ok, 1 expired, 2 unknown.
SETTLE: Final = "#!lua\n" + _ENTRIES + """
local P, action, now = ARGV[1], ARGV[3], tonumber(ARGV[4])
local ks = group_keys(P, ARGV[2])
local g = redis.call('HMGET', ks.g, 'created', 'due')
if not g[1] then return {'!nogroup'} end
local wm = tonumber(g[2])
local err = false
if ARGV[7] ~= '' then err = string.sub(ARGV[7], 2) end
local out = {}
for i = 8, #ARGV, 2 do
  local s, id = ARGV[i], ARGV[i + 1]
  local raw = redis.call('HGET', ks.e, s)
  if not raw then
    out[#out + 1] = 2
  else
    local e = cmsgpack.unpack(raw)
    if e[5] ~= id then  -- leased again since, or nacked: nobody holds this id
      out[#out + 1] = 1
    else
      if action == 'ack' then
        drop_entry(ks, s)
      elseif action == 'nack' then
        e[2], e[5], e[6] = now + tonumber(ARGV[5]), false, err
        put_entry(ks, s, e, wm)
      else
        e[2] = now + tonumber(ARGV[6])
        put_entry(ks, s, e, wm)
      end
      out[#out + 1] = 0
    end
  end
end
return out
"""

#: The scripts of this module, by the name the engine registers them under.
SCRIPTS: Final = {"GROUP": GROUP, "CLAIM": CLAIM, "SETTLE": SETTLE}

_OUTCOMES: Final = (Outcome.OK, Outcome.EXPIRED, Outcome.UNKNOWN)

#: ``script(name, args)``: run one registered script, store trouble as Unavailable.
RunScript = Callable[[str, list[Any]], Awaitable[Any]]
#: ``park(seq, answer)``: call ``answer`` once the node's listeners were fed up to ``seq``.
Park = Callable[[int, Callable[[], None]], None]


def _not_found(name: str) -> NotFound:
    return NotFound(f"no group {name!r}", field="group")


def _clamp(n: int) -> int:
    return max(0, min(n, MAX_SAFE))


class RedisGroups:
    """The consumer-group methods of :class:`~hubbub.engines.redis.RedisEngine`.

    Args:
        prefix: the store's key prefix.
        key_ttl_ms: the idempotency key lifetime (the append code needs it).
        script: runs one registered script.
        known: the engine's set of topics known to exist (no epoch candidate needed).
        park: the fan-out link's :meth:`~hubbub.engines.redis_feed.Feed.park`.
    """

    def __init__(self, prefix: str, key_ttl_ms: int, script: RunScript, known: set[str],
                 park: Park) -> None:
        self.prefix, self._key_ttl_ms = prefix, key_ttl_ms
        self._script, self._known, self._park = script, known, park

    async def group(self, name: str) -> GroupInfo | None:
        """See :meth:`hubbub.engines.base.Engine.group`."""
        return _group_info(name, await self._script("GROUP", [self.prefix, name]))

    async def create_group(
        self, name: str, patterns: Sequence[str], start_seq: int, now: int
    ) -> GroupInfo:
        """See :meth:`hubbub.engines.base.Engine.create_group`."""
        args = [self.prefix, name, json.dumps(list(patterns)), _clamp(start_seq), now]
        info = _group_info(name, await self._script("GROUP", args))
        assert info is not None
        return info

    async def delete_group(self, name: str, delete: Callable[[list[str]], Awaitable[int]]
                           ) -> bool:
        """See :meth:`hubbub.engines.base.Engine.delete_group`: one ``DEL`` of the
        group's four keys (atomic in Redis)."""
        p = self.prefix
        return await delete([f"{p}:{kind}:{name}" for kind in ("g", "ge", "gd", "gr")]) > 0

    async def claim(self, name: str, topics: Sequence[str], horizon: int, max_messages: int,
                    lease_ms: int, max_deliver: int, now: int) -> Claim:
        """See :meth:`hubbub.engines.base.Engine.claim`.

        Raises:
            NotFound: no such group.
            Unavailable: the store cannot be reached; nothing was claimed (or,
                if the connection broke after the script ran, the leases are
                lost to this caller and come back when they run out).
        """
        dlq = dead_letter_topic(name)
        # The random part of each lease id, as leases.new_lease_id makes it
        # (secrets.token_hex(6)); the script puts "<seq>." before it.
        tokens = secrets.token_hex(6 * max(0, min(max_messages, 1 << 20)))
        names = list(dict.fromkeys(topics))
        for _ in range(3):
            args = [self.prefix, self._key_ttl_ms, new_epoch(), name, dlq,
                    "" if dlq in self._known else new_epoch(), _clamp(horizon), max_messages,
                    lease_ms, max_deliver, now, tokens, os.urandom(8).hex(), MAX_DEAD, *names]
            reply = await self._script("CLAIM", args)
            if reply[0] == b"!nogroup":
                raise _not_found(name)
            if reply[0] != b"!retry":
                break
            self._known.discard(dlq)  # a rare epoch clash: try another candidate
        else:
            raise Unavailable("could not create a topic epoch")
        claim = _claim(dlq, now, reply)
        if claim.dead:
            self._known.add(dlq)
            await self._fed(claim.dead[-1].message.seq)
        return claim

    async def _fed(self, seq: int) -> None:
        """Return once this node's listeners had ``seq`` (as an append does)."""
        fed = asyncio.get_running_loop().create_future()
        self._park(seq, lambda: None if fed.done() else fed.set_result(None))
        await fed

    async def settle(
        self, name: str, lease_ids: Sequence[str], action: Literal["ack", "nack", "extend"],
        now: int, *, delay_ms: int = 0, lease_ms: int = 0, error: str | None = None,
    ) -> list[Outcome]:
        """See :meth:`hubbub.engines.base.Engine.settle`.

        Raises:
            InvalidRequest: a malformed lease id (before anything is sent).
            NotFound: no such group.
        """
        pairs: list[Any] = []
        for lease_id in lease_ids:
            pairs += [parse_lease_id(lease_id), lease_id]
        args = [self.prefix, name, action, now, delay_ms, lease_ms,
                "" if error is None else "=" + error, *pairs]
        reply = await self._script("SETTLE", args)
        if reply and reply[0] == b"!nogroup":
            raise _not_found(name)
        return [_OUTCOMES[code] for code in reply]


def _group_info(name: str, reply: list[Any]) -> GroupInfo | None:
    if not reply:
        return None
    patterns, delivered, created, pending = reply
    return GroupInfo(name, tuple(json.loads(patterns)), int(delivered), int(pending),
                     int(created))


def _claim(dlq: str, now: int, reply: list[Any]) -> Claim:
    """A :class:`Claim` from the reply of :data:`CLAIM`."""
    _, pairs, flat, dead, next_due = reply
    names = [pairs[i].decode() for i in range(0, len(pairs), 2)]
    epochs = [pairs[i].decode() for i in range(1, len(pairs), 2)]
    leases = []
    for i in range(0, len(flat), 5):
        lease_id, attempts, deadline, n, entry = flat[i:i + 5]
        msg = message(names[n - 1], epochs[n - 1], entry)
        leases.append(Lease(lease_id.decode(), msg, attempts, deadline))
    stored = [
        AppendResult(Message(dlq, dead[i].decode(), dead[i + 1], dead[i + 2], now,
                             dead[i + 3].decode(), dead[i + 4], JSON))
        for i in range(0, len(dead), 5)
    ]
    return Claim(leases, stored, next_due)
