"""Versioned model snapshots under one hash tag, so a new version switches atomically."""

from __future__ import annotations

import json
import time

from store.base import guarded, text


class SnapshotOps:
    def _mkey(self, *parts: str) -> str:
        return self.key("model", "{model}", *parts)

    @guarded
    def put_snapshot(self, blob: bytes, meta: dict, keep: int, replicas: list[bytes] = ()) -> int:
        """Store a model snapshot (and its bootstrap replicas) under the next version; versions
        older than `keep` are dropped."""
        version = int(self.client.incr(self._mkey("seq")))
        meta = {**meta, "version": version, "created_at": time.time(), "replicas": len(replicas)}
        fields = {"blob": blob, "meta": json.dumps(meta), **{f"r{i}": r for i, r in enumerate(replicas)}}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._mkey("v", str(version)), mapping=fields)
        pipe.zadd(self._mkey("versions"), {str(version): version})
        pipe.set(self._mkey("latest"), version)
        pipe.execute()
        stale = self.client.zrange(self._mkey("versions"), 0, -keep - 1)
        if stale:
            pipe = self.client.pipeline(transaction=True)
            for v in stale:
                pipe.delete(self._mkey("v", text(v)))
            pipe.zrem(self._mkey("versions"), *stale)
            pipe.execute()
        return version

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
        return [json.loads(m) for m in pipe.execute() if m]
