"""Steps of a client's request applied once, however often the request is retried.

An event sent to `POST /events` with an `event_id` is recorded in several writes (the stream,
the user's state, the user's vector, the item counts, the session counters), each its own
round trip. A retry after a 503 or a timeout must do what the first attempt did not, and
nothing twice. So the event has a marker hash (in the user's hash slot) that names each step
done; a step's writes and its mark go in one round trip (one transaction where the step is one:
the user's own keys), and a retry skips the marked steps. Two attempts of the same event at
once are kept apart by a lease on the marker: the second is told the event is busy. The
marker lives `ttl_s` after the last attempt: a retry later than that is a new event.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from store.base import guarded, text

_LEASE = "_lease"

_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = redis.call('HGET', KEYS[1], '_lease')
if lease then
  local owner, till = string.match(lease, '^(%S+) (%d+)$')
  if owner ~= ARGV[1] and tonumber(till) > now_ms then return false end
end
redis.call('HSET', KEYS[1], '_lease', ARGV[1] .. ' ' .. (now_ms + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HKEYS', KEYS[1])
"""  # KEYS: the marker; ARGV: this attempt's token, lease ms, marker ttl ms


class Once(NamedTuple):
    """One attempt at a request's steps: the marker, what an earlier attempt did, how long the marker lives."""

    key: str
    done: frozenset[str]
    ttl_ms: int


def mark(pipe, once: Once | None, step: str) -> None:
    """Queue, after a step's writes on `pipe`, that the step is done (nothing without `once`)."""
    if once is not None:
        pipe.hset(once.key, step, 1)
        pipe.pexpire(once.key, once.ttl_ms)


class OnceOps:
    def _once_key(self, user_id: str, request_id: str) -> str:
        return self.key("once", "{" + user_id + "}", request_id)

    @guarded
    def take_once(self, user_id: str, request_id: str, lease_s: float, ttl_s: float) -> Once | None:
        """Begin an attempt at the request `request_id` of `user_id`: what earlier attempts
        did, or None while another attempt holds the lease (for up to `lease_s`)."""
        key = self._once_key(user_id, request_id)
        fields = self._take_once(keys=[key], args=[uuid.uuid4().hex, max(1, int(lease_s * 1000)),
                                                   max(1, int(ttl_s * 1000))])
        if fields is None:
            return None
        return Once(key, frozenset(text(f) for f in fields) - {_LEASE}, max(1, int(ttl_s * 1000)))

    @guarded
    def release_once(self, once: Once) -> None:
        """End an attempt: its lease is given up (the marks stay for the marker's ttl)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(once.key, _LEASE)
        pipe.pexpire(once.key, once.ttl_ms)
        pipe.execute()
