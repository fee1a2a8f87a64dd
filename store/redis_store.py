"""Every read and write banditrec makes to Redis. Nothing else talks to Redis.

Keys all start with the configured prefix. Keys that are used together share a hash tag
(`{user_id}` for a user's state and the retry markers of its events, `{event_id}` for a decision and its feedback marks,
`{model}` for snapshots), so the layout works on Redis Cluster. Reads and writes on the
/recommend path use a client with a short timeout (`redis.request_timeout_ms`); after a
failure the store fails fast for `redis.retry_after_s`. Failures surface as `StoreError`
(HTTP 503 where something had to be recorded; a degraded answer on /recommend).
"""

from __future__ import annotations

import uuid

import redis

from store.base import Breaker, StoreError, chunks, guarded, stream_id, text
from store.canary import _BASE as _CANARY_BASE
from store.canary import _END as _CANARY_END
from store.canary import _START as _CANARY_START
from store.canary import CanaryOps
from store.counts import _CHANGES, _COUNTS, _SHOWN, _TOUCH
from store.decisions import _AGGREGATE, _CLAIM, DecisionOps
from store.events import EventOps
from store.experiments import _SESSION, ExperimentOps
from store.live import _CLEAR_IF as _LIVE_CLEAR
from store.live import LiveOps
from store.once import _TAKE, OnceOps
from store.popularity import _ATTRIBUTE, _BUMP, _TOP_WITH, PopularityOps
from store.pregen import PregenOps
from store.snapshots import _PUT, SnapshotOps
from store.streams import StreamOps
from store.users import _SET_IF, _SET_MAX, UserOps

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

__all__ = ["Store", "StoreError", "stream_id"]


class Store(UserOps, PopularityOps, StreamOps, DecisionOps, SnapshotOps, CanaryOps, LiveOps, PregenOps,
            ExperimentOps, OnceOps, EventOps):
    """Domain-level operations over a Redis client (and a fast one for the request path)."""

    def __init__(self, client: redis.Redis, prefix: str = "br", *, fast: redis.Redis | None = None,
                 retry_after_s: float = 1.0):
        self.client = client
        self.fast = fast if fast is not None else client
        self.prefix = prefix
        self.breaker = Breaker(retry_after_s)       # writes and background reads
        self.fast_breaker = Breaker(retry_after_s)  # request-path reads
        self._claim = client.register_script(_CLAIM)
        self._bump = client.register_script(_BUMP)
        self._attribute_script = client.register_script(_ATTRIBUTE)
        self._shown = client.register_script(_SHOWN)
        self._touch_script = client.register_script(_TOUCH)
        self._changes = client.register_script(_CHANGES)
        self._counts_script = client.register_script(_COUNTS)
        self._top_with_script = client.register_script(_TOP_WITH)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._put = client.register_script(_PUT)
        self._set_max = client.register_script(_SET_MAX)
        self._set_if = client.register_script(_SET_IF)
        self._aggregate = client.register_script(_AGGREGATE)
        self._session = client.register_script(_SESSION)
        self._take_once = client.register_script(_TAKE)
        self._canary_start = client.register_script(_CANARY_START)
        self._canary_end = client.register_script(_CANARY_END)
        self._canary_base = client.register_script(_CANARY_BASE)
        self._live_clear = client.register_script(_LIVE_CLEAR)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def close(self) -> None:
        self.client.close()
        if self.fast is not self.client:
            self.fast.close()

    @guarded
    def ping(self) -> bool:
        return bool(self.client.ping())

    @guarded
    def put_meta(self, name: str, value: str) -> None:
        self.client.hset(self.key("meta"), name, value)

    @guarded
    def get_meta(self, name: str) -> str | None:
        return text(self.client.hget(self.key("meta"), name))

    @guarded
    def acquire_lock(self, name: str, ttl_s: float) -> str | None:
        """A token if this process now holds the lock `name` (for `ttl_s` at most), else None."""
        token = uuid.uuid4().hex
        ok = self.client.set(self._lock_key(name), token, nx=True, px=max(1, int(ttl_s * 1000)))
        return token if ok else None

    def _lock_key(self, name: str) -> str:
        return self.key("lock", "{" + name + "}")

    @guarded
    def lock_held(self, name: str) -> bool:
        """Whether some process holds the lock `name` now."""
        return bool(self.client.exists(self._lock_key(name)))

    @guarded
    def renew_lock(self, name: str, token: str, ttl_s: float) -> bool:
        """Extend a held lock; False if it is no longer ours (it expired and someone took it)."""
        return bool(self._renew(keys=[self._lock_key(name)], args=[token, max(1, int(ttl_s * 1000))]))

    @guarded
    def release_lock(self, name: str, token: str) -> None:
        self._release(keys=[self._lock_key(name)], args=[token])

    @guarded
    def delete_all(self) -> int:
        """Delete every key under this prefix (tests, resets)."""
        deleted = 0
        for batch in chunks(self.client.scan_iter(match=f"{self.prefix}:*", count=1000), 500):
            pipe = self.client.pipeline(transaction=False)
            for key in batch:  # one key per command: keys of a batch may sit in different cluster slots
                pipe.delete(key)
            deleted += sum(pipe.execute())
        return deleted
