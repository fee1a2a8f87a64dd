"""Every read and write banditrec makes to Redis. Nothing else talks to Redis.

Keys all start with the configured prefix. Keys that are used together share a hash tag
(`{event_id}` for a decision and its feedback marks, `{model}` for snapshots), so the
layout works on Redis Cluster. Redis failures surface as `StoreError` (HTTP 503).
"""

from __future__ import annotations

import json
import time
from typing import Iterable, Iterator

import numpy as np
import redis

from banditrec.errors import Unavailable

_CLAIM = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
if cur == ARGV[2] then return 1 end
return 0
"""


class StoreError(Unavailable):
    """Redis did not answer or refused; nothing can be assumed recorded."""


def _guard(fn):
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreError(f"redis unavailable: {exc.__class__.__name__}: {exc}") from exc
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def stream_id(value: str) -> tuple[int, int]:
    """A Redis stream id as a comparable pair: "1700000000000-3" -> (1700000000000, 3)."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _s(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class Store:
    """Domain-level operations over one Redis client and a key prefix."""

    def __init__(self, client: redis.Redis, prefix: str = "br"):
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @_guard
    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- users ---------------------------------------------------------------------------

    BUILD_FIELDS = ("vec", "taste", "n", "build")  # what `banditrec build` owns in a user record

    @_guard
    def put_users(self, users: Iterable[tuple[str, dict]], chunk: int = 1000) -> int:
        """Write user records: `vector` (float32 array), `taste` (list), profile fields, `n`,
        `build`. The fields a build owns are replaced as a whole; other fields are kept."""
        count = 0
        pipe = self.client.pipeline(transaction=False)
        for user_id, fields in users:
            pipe.hdel(self.key("user", user_id), *self.BUILD_FIELDS)
            mapping = {}
            for name, value in fields.items():
                if name == "vector":
                    mapping["vec"] = np.asarray(value, dtype=np.float32).tobytes()
                elif name == "taste":
                    mapping["taste"] = json.dumps(list(value))
                elif value is not None:
                    mapping[name] = value
            if mapping:
                pipe.hset(self.key("user", user_id), mapping=mapping)
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
        return count

    @_guard
    def get_user(self, user_id: str) -> dict | None:
        raw = self.client.hgetall(self.key("user", user_id))
        if not raw:
            return None
        out = {}
        for name, value in raw.items():
            name = _s(name)
            if name == "vec":
                out["vector"] = np.frombuffer(value, dtype=np.float32)
            elif name == "taste":
                out["taste"] = json.loads(value)
            elif name == "n":
                out["n"] = int(value)
            else:
                out[name] = _s(value)
        return out

    # -- popularity ----------------------------------------------------------------------

    @_guard
    def put_popularity(self, scores: dict[str, float]) -> None:
        """Replace the global popularity ranking atomically."""
        key, tmp = self.key("pop", "{pop}"), self.key("pop", "{pop}", "tmp")
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(tmp)
        items = list(scores.items())
        for start in range(0, len(items), 10_000):
            pipe.zadd(tmp, dict(items[start:start + 10_000]))
        pipe.execute()
        if items:
            self.client.rename(tmp, key)
        else:
            self.client.delete(key)

    @_guard
    def top_popular(self, n: int) -> list[tuple[str, float]]:
        return [(_s(m), float(s)) for m, s in self.client.zrevrange(self.key("pop", "{pop}"), 0, n - 1, withscores=True)]

    # -- catalog changes (items upserted since the index was built) ----------------------

    @_guard
    def append_item(self, item: dict, vector: np.ndarray) -> str:
        fields = {"item": json.dumps(item, ensure_ascii=False), "vec": np.asarray(vector, np.float32).tobytes()}
        return _s(self.client.xadd(self.key("catalog"), fields))

    @_guard
    def read_items(self, after: str = "0-0", count: int = 10_000) -> list[tuple[str, dict, np.ndarray]]:
        """Catalog changes strictly after stream id `after`, oldest first."""
        out = []
        for sid, fields in self.client.xrange(self.key("catalog"), min=f"({after}", count=count):
            out.append((_s(sid), json.loads(fields[b"item"]), np.frombuffer(fields[b"vec"], dtype=np.float32)))
        return out

    def iter_items(self, after: str = "0-0") -> Iterator[tuple[str, dict, np.ndarray]]:
        while batch := self.read_items(after):
            yield from batch
            after = batch[-1][0]

    # -- decisions and feedback ----------------------------------------------------------

    @_guard
    def put_decision(self, event_id: str, decision: dict, ttl_s: float) -> bool:
        """Store a decision unless the event_id exists already; returns False on a clash."""
        return bool(self.client.set(self.key("dec", f"{{{event_id}}}"), json.dumps(decision),
                                    nx=True, px=max(1, int(ttl_s * 1000))))

    @_guard
    def feedback_state(self, event_id: str, item_id: str) -> tuple[dict | None, str | None]:
        """The decision (or None) and the reward-stream id already acknowledged for this item."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.key("dec", f"{{{event_id}}}"))
        pipe.hget(self.key("ack", f"{{{event_id}}}"), item_id)
        raw, acked = pipe.execute()
        return (json.loads(raw) if raw else None), _s(acked)

    @_guard
    def append_reward(self, entry: dict, maxlen: int) -> str:
        """Durably append a reward; the returned stream id orders it for the learner."""
        return _s(self.client.xadd(self.key("rewards"), {"e": json.dumps(entry)},
                                   maxlen=maxlen, approximate=True))

    @_guard
    def mark_acked(self, event_id: str, item_id: str, stream_id: str, ttl_s: float) -> None:
        key = self.key("ack", f"{{{event_id}}}")
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, item_id, stream_id)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))
        pipe.execute()

    @_guard
    def read_rewards(self, after: str = "0-0", count: int = 1000) -> list[tuple[str, dict]]:
        return [(_s(sid), json.loads(fields[b"e"]))
                for sid, fields in self.client.xrange(self.key("rewards"), min=f"({after}", count=count)]

    @_guard
    def reward_count(self) -> int:
        return int(self.client.xlen(self.key("rewards")))

    @_guard
    def claim_rewards(self, batch: list[tuple[str, dict]], ttl_s: float) -> list[bool]:
        """For each (stream_id, entry): may it be learned? The first stream entry of an
        (event_id, item_id) wins, and keeps winning on replay; later duplicates lose."""
        pipe = self.client.pipeline(transaction=False)
        for sid, entry in batch:
            self._claim(keys=[self.key("learned", f"{{{entry['event_id']}}}")],
                        args=[entry["item_id"], sid, max(1, int(ttl_s))], client=pipe)
        return [bool(r) for r in pipe.execute()]

    @_guard
    def dead_letter(self, stream_id: str, entry: dict, error: str, maxlen: int = 100_000) -> None:
        """Keep a reward that could not be learned, for a person to look at."""
        self.client.xadd(self.key("rewards", "dead"), {"id": stream_id, "e": json.dumps(entry), "error": error},
                         maxlen=maxlen, approximate=True)

    @_guard
    def dead_letters(self) -> list[dict]:
        return [{"id": _s(f[b"id"]), "entry": json.loads(f[b"e"]), "error": _s(f[b"error"])}
                for _, f in self.client.xrange(self.key("rewards", "dead"))]

    # -- model snapshots -----------------------------------------------------------------

    @_guard
    def put_snapshot(self, blob: bytes, meta: dict, keep: int) -> int:
        """Store a model snapshot under the next version; older than `keep` versions are dropped."""
        version = int(self.client.incr(self.key("model", "{model}", "seq")))
        meta = {**meta, "version": version, "created_at": time.time()}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key("model", "{model}", "v", str(version)), mapping={"blob": blob, "meta": json.dumps(meta)})
        pipe.zadd(self.key("model", "{model}", "versions"), {str(version): version})
        pipe.set(self.key("model", "{model}", "latest"), version)
        pipe.execute()
        stale = self.client.zrange(self.key("model", "{model}", "versions"), 0, -keep - 1)
        if stale:
            pipe = self.client.pipeline(transaction=True)
            for v in stale:
                pipe.delete(self.key("model", "{model}", "v", _s(v)))
            pipe.zrem(self.key("model", "{model}", "versions"), *stale)
            pipe.execute()
        return version

    @_guard
    def latest_snapshot(self) -> tuple[bytes, dict] | None:
        version = self.client.get(self.key("model", "{model}", "latest"))
        if version is None:
            return None
        raw = self.client.hgetall(self.key("model", "{model}", "v", _s(version)))
        if not raw:
            return None
        return raw[b"blob"], json.loads(raw[b"meta"])

    @_guard
    def list_snapshots(self) -> list[dict]:
        versions = self.client.zrange(self.key("model", "{model}", "versions"), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for v in versions:
            pipe.hget(self.key("model", "{model}", "v", _s(v)), "meta")
        return [json.loads(m) for m in pipe.execute() if m]

    # -- maintenance ---------------------------------------------------------------------

    @_guard
    def put_meta(self, name: str, value: str) -> None:
        self.client.hset(self.key("meta"), name, value)

    @_guard
    def get_meta(self, name: str) -> str | None:
        return _s(self.client.hget(self.key("meta"), name))

    @_guard
    def delete_all(self) -> int:
        """Delete every key under this prefix (tests, `banditrec reset`)."""
        deleted = 0
        for batch in _chunks(self.client.scan_iter(match=f"{self.prefix}:*", count=1000), 500):
            pipe = self.client.pipeline(transaction=False)
            for key in batch:  # one key per command: keys of a batch may sit in different cluster slots
                pipe.delete(key)
            deleted += sum(pipe.execute())
        return deleted


def _chunks(iterable, size):
    batch = []
    for x in iterable:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
