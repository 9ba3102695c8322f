"""The Lua scripts of :mod:`hubbub.engines.redis` (pure text: no I/O here).

Every script gets the key prefix ``P`` as ``ARGV[1]`` and builds its key
names from it (one Redis, one prefix per store; Redis Cluster is not
supported, so keys need not be declared). The layout::

    P:epoch           string  the store epoch, made once (SET NX)
    P:seq             string  the store's last seq
    P:topics          zset    topic -> its last seq (score)
    P:epochs          hash    topic epoch -> topic
    P:t:TOPIC         hash    epoch created start_seq last_offset last_seq trim_offset trim_seq
    P:s:TOPIC         stream  one entry per retained message, id OFFSET-SEQ,
                              fields t (time), i (id), c (content type), d (data)
    P:k:TOPIC KEY     hash    an idempotency key: n (when) o s t i c d; PX expiry
    P:fanout          channel one publish per append script: its new messages
    P:g:GROUP ...     a consumer group's keys: see :mod:`hubbub.engines.redis_groups`

Offsets and seqs are Lua numbers (doubles): exact below 2**53. Numbers that
go into keys or values are formatted with ``%d``, never ``tostring`` (which
would write 1e+15).

The scripts start with ``#!lua`` (Redis 7 function flags syntax, no flags):
such a script is refused as a whole when Redis is out of memory, instead of
failing half-way, which matters because Redis never rolls a script back.
"""

from __future__ import annotations

from typing import Final

#: The fan-out frame of one message, after a header ``>I2`` + store epoch.
#: offset, seq, time, then the lengths of topic, epoch, id, content type, data.
FRAME: Final = ">QQQHHHHI"

#: Lua: ``seq_at(skey, offset)``, the seq of the retained entry at ``offset``.
SEQ_AT: Final = """
local function seq_at(skey, offset)
  local e = redis.call('XRANGE', skey, string.format('%d', offset), string.format('%d', offset))
  return tonumber(string.match(e[1][1], '-(%d+)$'))
end
"""

#: Lua: ``new_topics`` and ``append``, the append logic shared by every script
#: that appends (APPEND, and the dead letters of a group claim); needs
#: :data:`SEQ_AT` before it. A request is
#: 8 consecutive values of an array ``A`` from index ``b``: topic, key ('' or
#: '=' .. key), max_messages (-1: none), content type, data, id, now, epoch
#: candidate ('' if the caller believes the topic exists).
APPEND_FNS: Final = """
-- The topics of the n requests at A[first] that do not exist yet, each with
-- its epoch candidate (false: it exists); nil when one lacks a usable
-- candidate. Reads only: call it before the script writes anything.
local function new_topics(P, A, first, n)
  local fresh = {}
  for i = 0, n - 1 do
    local b = first + i * 8
    local topic = A[b]
    if fresh[topic] == nil then
      fresh[topic] = false
      if redis.call('EXISTS', P .. ':t:' .. topic) == 0 then
        local cand = A[b + 7]
        if cand == '' or redis.call('HEXISTS', P .. ':epochs', cand) == 1 then
          return nil
        end
        fresh[topic] = cand
      end
    end
  end
  return fresh
end

-- Append the n requests at A[first] (``fresh`` from new_topics) and publish
-- the new messages on P:fanout. Returns {store epoch, then per request: dup,
-- epoch, offset, seq, and for a duplicate also time, id, content type, data}.
local function append(P, ttl, se_cand, A, first, n, fresh)
  local se = redis.call('GET', P .. ':epoch')
  if not se then
    se = se_cand
    redis.call('SET', P .. ':epoch', se)
  end
  -- Each position is taken (INCR, HINCRBY) before it is used: should a script
  -- ever fail half-way (Redis never rolls one back), no position is used twice,
  -- and the missing fan-out is a hole that the nodes fill from the streams.
  local out, frames = {se}, {}
  for i = 0, n - 1 do
    local b = first + i * 8
    local topic, key, maxm = A[b], A[b + 1], tonumber(A[b + 2])
    local ctype, data, mid, now = A[b + 3], A[b + 4], A[b + 5], A[b + 6]
    local tkey, skey = P .. ':t:' .. topic, P .. ':s:' .. topic
    local kkey, hit = nil, nil
    if key ~= '' then
      kkey = P .. ':k:' .. topic .. ' ' .. string.sub(key, 2)
      local h = redis.call('HMGET', kkey, 'n', 'o', 's', 't', 'i', 'c', 'd')
      if h[1] and tonumber(now) - tonumber(h[1]) < ttl then hit = h end
    end
    local t = redis.call('HMGET', tkey, 'epoch', 'trim_offset')
    if hit then
      for _, v in ipairs({1, t[1], tonumber(hit[2]), tonumber(hit[3]), tonumber(hit[4]),
                          hit[5], hit[6], hit[7]}) do out[#out + 1] = v end
    else
      local epoch, trim = t[1], tonumber(t[2])
      if not epoch then
        epoch, trim = fresh[topic], 0
        redis.call('HSET', tkey, 'epoch', epoch, 'created', now, 'last_offset', 0,
                   'start_seq', redis.call('GET', P .. ':seq') or '0', 'trim_offset', 0,
                   'trim_seq', 0)
        redis.call('HSET', P .. ':epochs', epoch, topic)
      end
      local seq = redis.call('INCR', P .. ':seq')
      local last = redis.call('HINCRBY', tkey, 'last_offset', 1)
      local sseq, slast = string.format('%d', seq), string.format('%d', last)
      redis.call('HSET', tkey, 'last_seq', sseq)
      redis.call('ZADD', P .. ':topics', sseq, topic)
      redis.call('XADD', skey, slast .. '-' .. sseq, 't', now, 'i', mid, 'c', ctype, 'd', data)
      if kkey then
        redis.call('HSET', kkey, 'n', now, 'o', slast, 's', sseq, 't', now, 'i', mid,
                   'c', ctype, 'd', data)
        redis.call('PEXPIRE', kkey, ttl)
      end
      if maxm >= 0 and last - trim > maxm then
        local through = last - maxm
        local trim_seq = seq_at(skey, through)
        redis.call('XTRIM', skey, 'MINID', string.format('%d', through + 1))
        redis.call('HSET', tkey, 'trim_offset', string.format('%d', through),
                   'trim_seq', string.format('%d', trim_seq))
      end
      for _, v in ipairs({0, epoch, last, seq}) do out[#out + 1] = v end
      frames[#frames + 1] = struct.pack('>I8I8I8I2I2I2I2I4', last, seq, tonumber(now),
        #topic, #epoch, #mid, #ctype, #data) .. topic .. epoch .. mid .. ctype .. data
    end
  end
  if #frames > 0 then
    -- Published inside the script: every node hears the appends in seq order.
    redis.call('PUBLISH', P .. ':fanout',
               struct.pack('>I2', #se) .. se .. table.concat(frames))
  end
  return out
end
"""

#: ARGV: P, key_ttl_ms, store epoch candidate, n, then 8 per request (see
#: :data:`APPEND_FNS`). Returns {'!retry'} having written nothing when a new
#: topic lacks a usable epoch candidate; else what ``append`` returns.
APPEND: Final = "#!lua\n" + SEQ_AT + APPEND_FNS + """
local P, n = ARGV[1], tonumber(ARGV[4])
-- Checks first, writes after: a script that returns early has changed nothing.
local fresh = new_topics(P, ARGV, 5, n)
if not fresh then return {'!retry'} end
return append(P, tonumber(ARGV[2]), ARGV[3], ARGV, 5, n, fresh)
"""

#: ARGV: P, topic, first offset to read, limit. Returns {epoch or false, entries}.
READ: Final = """#!lua
local P = ARGV[1]
local epoch = redis.call('HGET', P .. ':t:' .. ARGV[2], 'epoch')
if not epoch then return {false, {}} end
return {epoch, redis.call('XRANGE', P .. ':s:' .. ARGV[2], ARGV[3], '+', 'COUNT', ARGV[4])}
""".strip()

#: Lua: ``ARGV = P, topic, last offset, limit``: the topic's epoch (false when
#: it has none) and its newest ``limit`` entries with offset <= ``last``,
#: newest first (XREVRANGE: O(log N + limit)).
READ_BEFORE: Final = """#!lua
local P = ARGV[1]
local epoch = redis.call('HGET', P .. ':t:' .. ARGV[2], 'epoch')
if not epoch then return {false, {}} end
return {epoch, redis.call('XREVRANGE', P .. ':s:' .. ARGV[2], ARGV[3], '-', 'COUNT', ARGV[4])}
""".strip()

#: Lua: ``read_seq(P, after, limit, names)``, up to ``limit`` retained
#: messages with seq > ``after`` of the topics ``names`` (nil: every topic), in
#: seq order. Returns ``topics`` {name, epoch, ...} and ``found`` {{seq, topic
#: number (1-based), entry}, ...}. Needs :data:`SEQ_AT` before it.
#:
#: Cost, for T named topics of which A have messages after ``after`` (A comes
#: from ``P:topics``, scored by last seq, in O(log N)): the walk looks up
#: min(T, A) topic hashes (taking the A topics from ``P:topics`` when that is
#: the smaller set, and T Lua table inserts to check names against). Per topic
#: with newer messages, a binary search over its retained offsets (seq grows
#: with offset) finds the first entry after ``after`` in about log2(retained)
#: one-entry XRANGEs; topics are then visited by that first seq, each with one
#: XRANGE of up to ``limit`` entries, and the walk stops as soon as no further
#: topic can beat the ``limit`` messages already found.
READ_SEQ_FN: Final = """
local function read_seq(P, after, limit, names)
  local seen, cands = {}, {}
  if names == nil then
    names = redis.call('ZRANGEBYSCORE', P .. ':topics', '(' .. string.format('%d', after), '+inf')
  elseif #names > 1 then
    local newer = redis.call('ZCOUNT', P .. ':topics', '(' .. string.format('%d', after), '+inf')
    if newer < #names then  -- fewer topics have news than were named: walk those
      local wanted = {}
      for _, name in ipairs(names) do wanted[name] = true end
      names = {}
      for _, name in ipairs(redis.call('ZRANGEBYSCORE', P .. ':topics',
                                       '(' .. string.format('%d', after), '+inf')) do
        if wanted[name] then names[#names + 1] = name end
      end
    end
  end
  for _, name in ipairs(names) do
    local h = redis.call('HMGET', P .. ':t:' .. name, 'epoch', 'last_offset', 'last_seq',
                         'trim_offset')
    if h[1] and not seen[name] and tonumber(h[3]) > after and tonumber(h[4]) < tonumber(h[2]) then
      seen[name] = true
      local skey = P .. ':s:' .. name
      local lo, hi = tonumber(h[4]), tonumber(h[2])
      local first = seq_at(skey, lo + 1)
      if first <= after then
        -- seq_at(lo) <= after < seq_at(hi)
        lo = lo + 1
        while hi - lo > 1 do
          local mid = math.floor((lo + hi) / 2)
          if seq_at(skey, mid) > after then hi = mid else lo = mid end
        end
        lo, first = hi - 1, seq_at(skey, hi)
      end
      cands[#cands + 1] = {first, name, h[1], skey, lo + 1}
    end
  end
  table.sort(cands, function(a, b) return a[1] < b[1] end)
  local topics, found, bound = {}, {}, nil
  for _, c in ipairs(cands) do
    if bound and c[1] > bound then break end
    topics[#topics + 1] = c[2]
    topics[#topics + 1] = c[3]
    local entries = redis.call('XRANGE', c[4], string.format('%d', c[5]), '+', 'COUNT', limit)
    for _, e in ipairs(entries) do
      found[#found + 1] = {tonumber(string.match(e[1], '-(%d+)$')), #topics / 2, e}
    end
    if #found >= limit then
      table.sort(found, function(a, b) return a[1] < b[1] end)
      for j = #found, limit + 1, -1 do found[j] = nil end
      bound = found[limit][1]
    end
  end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  return topics, found
end
"""

#: ARGV: P, after_seq, limit, then the topics, or '*' for every topic.
#: Returns {{topic, epoch, ...}, {topic index (1-based), entry, ...}} in seq
#: order (the walk and its cost: :data:`READ_SEQ_FN`).
READ_SEQ: Final = "#!lua\n" + SEQ_AT + READ_SEQ_FN + """
local names = nil
if ARGV[4] ~= '*' then
  names = {}
  for i = 4, #ARGV do names[#names + 1] = ARGV[i] end
end
local topics, found = read_seq(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), names)
local out = {}
for _, f in ipairs(found) do
  out[#out + 1] = f[2]
  out[#out + 1] = f[3]
end
return {topics, out}
"""

_INFO_FIELDS: Final = "'epoch', 'last_offset', 'last_seq', 'start_seq', 'trim_offset', " \
                      "'trim_seq', 'created'"

#: ARGV: P. Returns {topic, {fields}, ...} for every topic, in no order.
TOPICS: Final = f"""#!lua
local P = ARGV[1]
local out = {{}}
for _, name in ipairs(redis.call('ZRANGE', P .. ':topics', 0, -1)) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('HMGET', P .. ':t:' .. name, {_INFO_FIELDS})
end
return out
"""

#: The fields of ``P:t:TOPIC`` that make a TopicInfo, in this order.
INFO_FIELDS: Final = tuple(f.strip(" '") for f in _INFO_FIELDS.split(","))

#: ARGV: P, epoch. Returns {topic, current epoch of that topic} or {}.
LOOKUP_EPOCH: Final = """#!lua
local P = ARGV[1]
local topic = redis.call('HGET', P .. ':epochs', ARGV[2])
if not topic then return {} end
return {topic, redis.call('HGET', P .. ':t:' .. topic, 'epoch')}
"""

#: ARGV: P, topic. Removes the topic's log and state (its epoch stays in
#: ``P:epochs``, never current again; idempotency keys run out on their own).
#: Returns 1 when there was a log.
DELETE_TOPIC: Final = """#!lua
local P, topic = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. ':t:' .. topic) == 0 then return 0 end
redis.call('DEL', P .. ':s:' .. topic, P .. ':t:' .. topic)
redis.call('ZREM', P .. ':topics', topic)
return 1
""".strip()

#: ARGV: P, now, then 3 per topic: topic, max_messages, max_age_ms (-1: no limit).
#: Returns how many messages were removed.
TRIM: Final = "#!lua\n" + SEQ_AT + """
local P, now = ARGV[1], tonumber(ARGV[2])
local removed = 0
for b = 3, #ARGV, 3 do
  local topic, maxm, age = ARGV[b], tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local tkey, skey = P .. ':t:' .. topic, P .. ':s:' .. topic
  local h = redis.call('HMGET', tkey, 'last_offset', 'trim_offset')
  if h[1] then
    local last, trim = tonumber(h[1]), tonumber(h[2])
    local through = trim
    if maxm >= 0 then through = math.max(through, last - maxm) end
    if age >= 0 then
      -- The oldest message young enough to keep: everything before it goes.
      local cutoff, o, done = now - age, through, false
      while not done and o < last do
        local es = redis.call('XRANGE', skey, string.format('%d', o + 1), '+', 'COUNT', 100)
        if #es == 0 then break end
        for _, e in ipairs(es) do
          local off = tonumber(string.match(e[1], '^(%d+)-'))
          if tonumber(e[2][2]) >= cutoff then done = true; break end
          o = off
        end
      end
      through = math.max(through, o)
    end
    if through > trim then
      local trim_seq = seq_at(skey, through)
      removed = removed + redis.call('XTRIM', skey, 'MINID', string.format('%d', through + 1))
      redis.call('HSET', tkey, 'trim_offset', string.format('%d', through),
                 'trim_seq', string.format('%d', trim_seq))
    end
  end
end
return removed
"""
