"""The shared limiter's decisions, each one atomic Lua script run inside Redis.

The portal's limits these scripts mirror are described in the official REST docs,
``limits.md`` of bitrix-tools/b24-rest-docs (leaky bucket per portal and source
address; operating time per method and application in a 10-minute window).

Conventions every script follows:

- The clock is Redis's own ``TIME``, so processes on hosts with skewed clocks agree;
  a script returns *relative* waits, which the caller sleeps on its own clock.
- Times and durations are integer microseconds. Lua numbers are doubles and
  ``tostring`` keeps only 14 significant digits (a Unix time in microseconds has 16),
  so every number written back goes through ``string.format('%.0f', x)``.
- Every key written gets a TTL, so an abandoned portal leaves nothing behind.

:class:`Scripts` loads them once per connection pool with ``register_script``; a
script missing from the server's cache (a Redis restart or ``SCRIPT FLUSH``) is
loaded again transparently by redis-py's ``EVALSHA``-then-``SCRIPT LOAD`` fallback.
"""
from __future__ import annotations

import threading
from typing import Any, List, Sequence

__all__ = ["Scripts"]

_PRELUDE = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(x)
  return string.format('%.0f', x)
end
"""

# KEYS[1] bucket hash {tat, iv, cuts}
# ARGV capacity, margin, base interval us, ttl ms, fill (1: count the bucket as full)
# -> {wait us, interval us, cuts}
BOOK = _PRELUDE + """
local capacity = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local now = now_us()
local h = redis.call('HMGET', KEYS[1], 'tat', 'iv', 'cuts')
local tat = tonumber(h[1]) or 0
local iv = tonumber(h[2]) or base
local cuts = tonumber(h[3]) or 0
if iv < base then iv = base end
if ARGV[5] == '1' then tat = math.max(tat, now + capacity * iv) end
-- GCRA (virtual scheduling): the bucket holds (tat - now) / iv requests; a request
-- fits when its +1 keeps the level within capacity - margin.
local burst = capacity - margin
local send_at = math.max(now, tat - (burst - 1) * iv)
local new_tat = math.max(tat, send_at) + iv
redis.call('HSET', KEYS[1], 'tat', int(new_tat), 'iv', int(iv), 'cuts', int(cuts))
redis.call('PEXPIRE', KEYS[1], math.floor((new_tat - now) / 1000) + ttl)
return {int(send_at - now), int(iv), int(cuts)}
"""

# KEYS[1] bucket hash; ARGV capacity, base interval us, slowest interval us,
# cuts seen at the caller's booking, penalty factor, ttl ms -> {interval us, cuts}
PENALIZE = _PRELUDE + """
local capacity = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local slowest = tonumber(ARGV[3])
local seen = tonumber(ARGV[4])
local factor = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local now = now_us()
local h = redis.call('HMGET', KEYS[1], 'tat', 'iv', 'cuts')
local tat = tonumber(h[1]) or 0
local iv = tonumber(h[2]) or base
local cuts = tonumber(h[3]) or 0
-- A rejection of a request booked before the latest cut was sent under the old
-- rate: the whole wave of 503s it belongs to has already cut the rate once.
if seen >= cuts then
  local new_iv = math.min(slowest, iv / factor)
  if tat > now then tat = now + (tat - now) * new_iv / iv end
  iv = new_iv
  cuts = cuts + 1
end
-- The portal's bucket is full now, whatever we counted.
tat = math.max(tat, now + capacity * iv)
redis.call('HSET', KEYS[1], 'tat', int(tat), 'iv', int(iv), 'cuts', int(cuts))
redis.call('PEXPIRE', KEYS[1], math.floor((tat - now) / 1000) + ttl)
return {int(iv), int(cuts)}
"""

# KEYS[1] bucket hash; ARGV base interval us, reward factor, ttl ms -> interval us
REWARD = _PRELUDE + """
local base = tonumber(ARGV[1])
local factor = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tat', 'iv')
local iv = tonumber(h[2]) or base
if iv <= base then return int(base) end
local now = now_us()
local tat = tonumber(h[1]) or 0
local new_iv = math.max(base, iv / factor)
if tat > now then tat = now + (tat - now) * new_iv / iv end
redis.call('HSET', KEYS[1], 'tat', int(tat), 'iv', int(new_iv))
redis.call('PEXPIRE', KEYS[1], math.max(0, math.floor((tat - now) / 1000)) + ttl)
return int(new_iv)
"""

# KEYS[1] bucket hash -> {requests booked ahead of now, in microrequests; interval us}
PEEK = _PRELUDE + """
local h = redis.call('HMGET', KEYS[1], 'tat', 'iv')
local iv = tonumber(h[2])
if not iv then return {0, 0} end
local ahead = math.max(0, (tonumber(h[1]) or 0) - now_us())
return {int(ahead * 1000000 / iv), int(iv)}
"""

# Operating window. Per method i (1-based) KEYS[2i-1] = report hash {op, srv, reset,
# blocked, cost, cost_at, c<class>, c<class>@} and KEYS[2i] = lease zset (member
# "<lease id>|<cost us>", score = expiry us). ``cost`` is one command's cost (the
# highest recent, halving every cost half-life), ``c<class>`` the same per cost
# class (offset pages of similar depth).
# ARGV threshold us, lease ttl us, lease id, poll us, key ttl ms, then per method:
# k, then k pairs (cost class, command count).
# -> {0, cost us per method...} when booked, or {wait us}.
ACQUIRE = _PRELUDE + """
local threshold = tonumber(ARGV[1])
local lease_ttl = tonumber(ARGV[2])
local lease_id = ARGV[3]
local poll = tonumber(ARGV[4])
local key_ttl = tonumber(ARGV[5])
local now = now_us()
local wait = 0
local costs = {}
local methods = #KEYS / 2
local at = 6
for i = 1, methods do
  local win, leases = KEYS[2 * i - 1], KEYS[2 * i]
  -- A process that died with commands in flight frees them when they expire.
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  local flat = redis.call('HGETALL', win)
  local h, known = {}, {}
  for j = 1, #flat, 2 do
    local name, value = flat[j], tonumber(flat[j + 1])
    h[name] = value
    local class = string.match(name, '^c(%d+)$')
    if class then known[tonumber(class)] = value end
  end
  local op = h['op'] or 0
  local deadline = h['blocked'] or 0
  local reset = h['reset']
  if op >= threshold and reset then deadline = math.max(deadline, reset) end
  -- Each class at its own cost; a class never reported at the nearest reported
  -- class deeper than it, or else (deeper than any) at the highest cost seen.
  local highest = h['cost'] or 0
  for _, value in pairs(known) do highest = math.max(highest, value) end
  local cost = 0
  local k = tonumber(ARGV[at])
  for j = 1, k do
    local class, n = tonumber(ARGV[at + 2 * j - 1]), tonumber(ARGV[at + 2 * j])
    local each = known[class]
    if not each then
      local above = nil
      for c, value in pairs(known) do
        if c > class and (not above or c < above) then above = c end
      end
      each = above and known[above] or highest
    end
    cost = cost + each * n
  end
  at = at + 1 + 2 * k
  costs[i] = cost
  if now < deadline then
    wait = math.max(wait, deadline - now)
  elseif op >= threshold or h['cost'] then
    -- It fits when the last report plus the commands in flight plus its own stay
    -- under the threshold. Otherwise the in-flight commands' reports will tell
    -- more (poll); with none in flight, the server frees its oldest minute at the
    -- announced reset: wait for it, then go (the probe) and let the next report
    -- guide the rest.
    local booked = 0
    local flying = redis.call('ZRANGE', leases, 0, -1)
    for _, member in ipairs(flying) do
      booked = booked + (tonumber(string.match(member, '|(%d+)$')) or 0)
    end
    if op + booked + cost > threshold then
      if #flying > 0 then
        wait = math.max(wait, poll)
      elseif reset and reset > now then
        wait = math.max(wait, reset - now)
      end
    end
  end
end
if wait > 0 then return {int(wait)} end
local out = {0}
for i = 1, methods do
  local leases = KEYS[2 * i]
  redis.call('ZADD', leases, int(now + lease_ttl), lease_id .. '|' .. int(costs[i]))
  redis.call('PEXPIRE', leases, math.floor(lease_ttl / 1000) + key_ttl)
  out[i + 1] = int(costs[i])
end
return out
"""

# Settle a request: free its leases and store the newest reports.
# KEYS as ACQUIRE. ARGV lease id, threshold us, default block us, key ttl ms, cost
# half-life us, then
# per method: booked cost us (-1: no lease), operating us (-1: no report), server
# time us (-1: unknown), reset in us (-1: unknown), k, then k pairs (cost class,
# the highest cost us reported for it).
SETTLE = _PRELUDE + """
local lease_id = ARGV[1]
local threshold = tonumber(ARGV[2])
local default_block = tonumber(ARGV[3])
local key_ttl = tonumber(ARGV[4])
local half_life = tonumber(ARGV[5])
local now = now_us()
-- The highest recent cost, halving every half-life: one method's commands can
-- differ tenfold, and an average would let a wave overshoot the budget.
local function decayed_max(win, field, cost)
  local known = tonumber(redis.call('HGET', win, field))
  if known then
    local since = tonumber(redis.call('HGET', win, field .. '@')) or now
    local age = math.max(0, now - since)
    cost = math.max(cost, known * math.pow(0.5, age / math.max(half_life, 1)))
  end
  redis.call('HSET', win, field, int(cost), field .. '@', int(now))
end
local at = 6
for i = 1, #KEYS / 2 do
  local win, leases = KEYS[2 * i - 1], KEYS[2 * i]
  local booked = tonumber(ARGV[at])
  local op = tonumber(ARGV[at + 1])
  local srv = tonumber(ARGV[at + 2])
  local reset_in = tonumber(ARGV[at + 3])
  local k = tonumber(ARGV[at + 4])
  if booked >= 0 then redis.call('ZREM', leases, lease_id .. '|' .. int(booked)) end
  for j = 1, k do
    local class, cost = ARGV[at + 3 + 2 * j], tonumber(ARGV[at + 4 + 2 * j])
    decayed_max(win, 'cost', cost)
    decayed_max(win, 'c' .. class, cost)
  end
  at = at + 5 + 2 * k
  if op >= 0 then
    local newest = tonumber(redis.call('HGET', win, 'srv'))
    -- A report older than the newest kept says nothing new about the window.
    if srv < 0 or not newest or srv >= newest then
      redis.call('HSET', win, 'op', int(op))
      if srv >= 0 then redis.call('HSET', win, 'srv', int(srv)) end
      if reset_in >= 0 then
        redis.call('HSET', win, 'reset', int(now + reset_in))
      elseif op >= threshold then
        redis.call('HSET', win, 'reset', int(now + default_block))
      else
        redis.call('HDEL', win, 'reset')
      end
    end
  end
  redis.call('PEXPIRE', win, key_ttl)
end
return 1
"""

# KEYS[1] report hash; ARGV seconds us (-1: the announced reset, else default),
# default block us, key ttl ms -> blocked for us
BLOCK = _PRELUDE + """
local seconds = tonumber(ARGV[1])
local default_block = tonumber(ARGV[2])
local key_ttl = tonumber(ARGV[3])
local now = now_us()
local h = redis.call('HMGET', KEYS[1], 'reset', 'blocked')
if seconds < 0 then
  local reset = tonumber(h[1])
  if reset and reset > now then seconds = reset - now else seconds = default_block end
end
local blocked = math.max(tonumber(h[2]) or 0, now + seconds)
redis.call('HSET', KEYS[1], 'blocked', int(blocked))
redis.call('PEXPIRE', KEYS[1], math.floor((blocked - now) / 1000) + key_ttl)
return int(blocked - now)
"""

# KEYS[1] lock; ARGV owner token -> 1 when released
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SOURCES = {
    "book": BOOK, "penalize": PENALIZE, "reward": REWARD, "peek": PEEK,
    "acquire": ACQUIRE, "settle": SETTLE, "block": BLOCK, "unlock": UNLOCK,
}


class Scripts:
    """The scripts registered on one Redis client, and a count of round trips.

    ``run(name, keys, args)`` sends ``EVALSHA`` (one round trip; a second one only
    after the server lost its script cache). Thread-safe.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._scripts = {name: client.register_script(source)
                         for name, source in _SOURCES.items()}
        self._lock = threading.Lock()
        self._round_trips = 0

    @property
    def client(self) -> Any:
        return self._client

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._lock:
            self._round_trips += 1
        return self._scripts[name](keys=list(keys), args=list(args))

    def count(self) -> None:
        """Count one round trip made outside :meth:`run` (a plain command)."""
        with self._lock:
            self._round_trips += 1

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips


def as_ints(reply: Any) -> List[int]:
    """A script's reply (numbers formatted as strings) as a list of ints."""
    if not isinstance(reply, (list, tuple)):
        reply = [reply]
    return [int(float(x.decode() if isinstance(x, bytes) else x)) for x in reply]
