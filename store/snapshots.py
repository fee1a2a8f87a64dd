"""Versioned model snapshots under one hash tag, so a new version switches atomically."""

from __future__ import annotations

import json
import time

from store.base import guarded, text


class SnapshotOps:
    def _mkey(self, *parts: str) -> str:
        return self.key("model", "{model}", *parts)

    @guarded
    def put_snapshot(self, blob: bytes, meta: dict, keep: int) -> int:
        """Store a model snapshot under the next version; versions older than `keep` are dropped."""
        version = int(self.client.incr(self._mkey("seq")))
        meta = {**meta, "version": version, "created_at": time.time()}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._mkey("v", str(version)), mapping={"blob": blob, "meta": json.dumps(meta)})
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
    def latest_snapshot(self) -> tuple[bytes, dict] | None:
        version = self.client.get(self._mkey("latest"))
        if version is None:
            return None
        raw = self.client.hgetall(self._mkey("v", text(version)))
        if not raw:
            return None
        return raw[b"blob"], json.loads(raw[b"meta"])

    @guarded
    def list_snapshots(self) -> list[dict]:
        versions = self.client.zrange(self._mkey("versions"), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for v in versions:
            pipe.hget(self._mkey("v", text(v)), "meta")
        return [json.loads(m) for m in pipe.execute() if m]
