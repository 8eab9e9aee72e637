"""The gateway's state in Redis: one count for any number of servers.

Admission is one Lua script (`ADMIT`): Redis runs a script whole before any
other command, so there is no read-modify-write race between servers. The
script reads the clock of Redis itself (`TIME`), not each server's, so
servers whose clocks disagree still share one window. Scores are whole
milliseconds, which a Lua number holds exactly (docs/gateway.md, "Redis:
scripts, TIME, sorted sets").

    koala-chat:requests:NAME   sorted set: a request per member, score = when
    koala-chat:streams:NAME    sorted set: an open stream, score = lease's end
    koala-chat:usage:DAY:NAME  hash: counter -> amount
    koala-chat:usage           set of "DAY NAME" that have a usage hash

When Redis cannot be reached, every operation raises `StateUnavailableError`
(the request gets 503, never served unlimited); the client reconnects on the
next operation, so service resumes by itself once Redis is back.
"""

from __future__ import annotations

from typing import Final

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..._urls import redact_url
from .backends import STREAM_LEASE, Counts, Refusal, StateUnavailableError
from .keys import Limits

__all__ = ["ADMIT", "RedisState"]

PREFIX: Final = "koala-chat"

#: Seconds to connect to Redis, and to wait for one reply: a request waits
#: that long at most before its 503.
REDIS_TIMEOUT: Final = 1.0

#: KEYS: the requests' and the streams' sorted sets. ARGV: the most requests
#: per minute and per day, the most streams (0: no such limit), the lease in
#: ms, the ticket. Returns nil when admitted, else {limit, retry after in s}.
ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, rpd = tonumber(ARGV[1]), tonumber(ARGV[2])
local streams, lease, ticket = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if streams > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= streams then
    return {'max_streams', 1}
  end
end
local longest = 0
if rpd > 0 then longest = 86400000 elseif rpm > 0 then longest = 60000 end
if longest > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
  local windows = {{60000, rpm, 'requests_per_minute'},
                   {86400000, rpd, 'requests_per_day'}}
  for _, w in ipairs(windows) do
    if w[2] > 0 then
      local from = '(' .. (now - w[1])
      local n = redis.call('ZCOUNT', KEYS[1], from, '+inf')
      if n >= w[2] then
        local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf',
                                  'WITHSCORES', 'LIMIT', n - w[2], 1)
        local wait = math.ceil((tonumber(oldest[2]) + w[1] - now) / 1000)
        return {w[3], math.max(1, wait)}
      end
    end
  end
  redis.call('ZADD', KEYS[1], now, ticket)
  redis.call('PEXPIRE', KEYS[1], longest)
end
if streams > 0 then
  redis.call('ZADD', KEYS[2], now + lease, ticket)
  redis.call('PEXPIRE', KEYS[2], lease)
end
return nil
"""


class RedisState:
    """The state in the Redis database of `url` (`redis://host:port/db`)."""

    def __init__(self, url: str) -> None:
        self.where = redact_url(url)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            # One more try on a fresh connection: after Redis restarted, the
            # pool's old connections fail once each.
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
        self._admit = self._redis.register_script(ADMIT)

    def _unavailable(self, exc: Exception) -> StateUnavailableError:
        return StateUnavailableError(
            f"the gateway's state in Redis ({self.where}) cannot be reached "
            f"({type(exc).__name__})"
        )

    async def admit(self, name: str, limits: Limits, ticket: str) -> Refusal | None:
        """Count a request of `name` under `limits` or refuse it (one script)."""
        args = (
            limits.requests_per_minute or 0,
            limits.requests_per_day or 0,
            limits.max_streams or 0,
            STREAM_LEASE * 1000,
            ticket,
        )
        keys = [f"{PREFIX}:requests:{name}", f"{PREFIX}:streams:{name}"]
        try:
            result = await self._admit(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        if result is None:
            return None
        field, wait = result
        limit = str(field)
        return Refusal(limit, getattr(limits, limit), int(wait))

    async def release(self, name: str, ticket: str) -> None:
        """Give back the stream place `ticket`."""
        try:
            await self._redis.zrem(f"{PREFIX}:streams:{name}", ticket)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def add_usage(self, counts: Counts) -> None:
        """Add `counts` to the usage hashes, in one MULTI transaction."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for (key, day), values in counts.items():
                    hash_name = f"{PREFIX}:usage:{day}:{key}"
                    for counter, amount in values.items():
                        pipe.hincrby(hash_name, counter, amount)
                    pipe.sadd(f"{PREFIX}:usage", f"{day} {key}")
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def usage(self, since: str | None) -> Counts:
        """Return the usage counts per key and day, from day `since` on."""
        try:
            members = await self._redis.smembers(f"{PREFIX}:usage")
            pairs = sorted(tuple(str(member).split(" ", 1)) for member in members)
            chosen = [(day, key) for day, key in pairs if day >= (since or "")]
            # One round trip for all the hashes, not one per day and key.
            async with self._redis.pipeline(transaction=False) as pipe:
                for day, key in chosen:
                    pipe.hgetall(f"{PREFIX}:usage:{day}:{key}")
                replies = await pipe.execute()
            counts: dict[tuple[str, str], dict[str, int]] = {}
            for (day, key), values in zip(chosen, replies, strict=True):
                counts[(key, day)] = {
                    str(counter): int(amount) for counter, amount in values.items()
                }
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return counts

    async def close(self) -> None:
        """Close the connections; harmless twice."""
        await self._redis.aclose()
