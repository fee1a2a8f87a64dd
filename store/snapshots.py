"""Versioned model snapshots under one hash tag, so a new version switches atomically."""

from __future__ import annotations

import json
import time

from store.base import guarded, text


# KEYS: seq, latest, versions, version-key prefix (all under the {model} hash tag).
# ARGV: expected latest (-1: any), keep, then field/value pairs of the snapshot hash; the
# version number is stored as its own field. `latest` only ever moves up.
_PUT = """
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local expect = tonumber(ARGV[1])
if expect >= 0 and latest ~= expect then return -1 end
local version = redis.call('INCR', KEYS[1])
local fields = {'version', version}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[4] .. version, unpack(fields))
redis.call('ZADD', KEYS[3], version, tostring(version))
if version > latest then redis.call('SET', KEYS[2], version) end
local keep = tonumber(ARGV[2])
local stale = redis.call('ZRANGE', KEYS[3], 0, -keep - 1)
for _, v in ipairs(stale) do
  redis.call('DEL', KEYS[4] .. v)
  redis.call('ZREM', KEYS[3], v)
end
return version
"""


class SnapshotOps:
    def _mkey(self, *parts: str) -> str:
        return self.key("model", "{model}", *parts)

    @guarded
    def put_snapshot(self, blob: bytes, meta: dict, keep: int, replicas: list[bytes] = (),
                     expect_latest: int | None = None) -> int | None:
        """Store a model snapshot (and its bootstrap replicas) under the next version, atomically;
        versions older than `keep` are dropped. With `expect_latest`, only if the newest version
        is still that one (else None: someone else wrote one meanwhile, e.g. a rollback)."""
        fields = [b"blob", blob, b"meta", json.dumps({**meta, "created_at": time.time(),
                                                      "replicas": len(replicas)}).encode()]
        for i, r in enumerate(replicas):
            fields += [f"r{i}".encode(), r]
        version = self._put(keys=[self._mkey("seq"), self._mkey("latest"), self._mkey("versions"), self._mkey("v", "")],
                            args=[-1 if expect_latest is None else int(expect_latest), int(keep), *fields])
        return None if int(version) < 0 else int(version)

    @guarded
    def put_learner_progress(self, progress: dict) -> None:
        """What the learner has learned so far (cursor, count, time): for lag and backlog readings."""
        self.client.set(self._mkey("progress"), json.dumps(progress))

    @guarded
    def learner_progress(self) -> dict | None:
        raw = self.client.get(self._mkey("progress"))
        return json.loads(raw) if raw else None

    @guarded
    def latest_snapshot(self) -> tuple[bytes, dict] | None:
        """(model blob, meta) of the newest version; meta["replica_blobs"] holds the replicas."""
        version = self.client.get(self._mkey("latest"))
        return None if version is None else self.get_snapshot(int(version))

    @guarded
    def latest_version(self) -> int:
        return int(self.client.get(self._mkey("latest")) or 0)

    @guarded
    def get_snapshot(self, version: int) -> tuple[bytes, dict] | None:
        raw = self.client.hgetall(self._mkey("v", str(version)))
        if not raw:
            return None
        meta = json.loads(raw[b"meta"])
        meta["version"] = int(raw.get(b"version", version))
        meta["replica_blobs"] = [raw[f"r{i}".encode()] for i in range(meta.get("replicas", 0))]
        return raw[b"blob"], meta

    @guarded
    def rollback_snapshot(self, version: int, cursor: str, keep: int) -> int:
        """A new version with the model of `version`, learning on from `cursor` (the rewards in
        between are skipped: that is what rolling back means)."""
        snapshot = self.get_snapshot(version)
        if snapshot is None:
            raise KeyError(version)
        blob, meta = snapshot
        replicas = meta.pop("replica_blobs")
        meta.update(cursor=cursor, origin="rollback", from_version=version)
        for key in ("version", "created_at", "replicas"):
            meta.pop(key, None)
        return self.put_snapshot(blob, meta, keep, replicas)

    @guarded
    def count_apprentice(self, matched: bool) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.key("apprentice"), "decisions", 1)
        if matched:
            pipe.hincrby(self.key("apprentice"), "matches", 1)
        pipe.execute()

    @guarded
    def apprentice_counts(self) -> dict[str, int]:
        raw = self.client.hgetall(self.key("apprentice"))
        return {text(k): int(v) for k, v in raw.items()}

    @guarded
    def reward_head(self) -> str:
        last = self.client.xrevrange(self.key("rewards"), count=1)
        return text(last[0][0]) if last else "0-0"

    @guarded
    def list_snapshots(self) -> list[dict]:
        versions = self.client.zrange(self._mkey("versions"), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for v in versions:
            pipe.hget(self._mkey("v", text(v)), "meta")
        return [{**json.loads(m), "version": int(text(v))} for v, m in zip(versions, pipe.execute()) if m]
