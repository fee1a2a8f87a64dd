"""Versioned model snapshots under one hash tag, so a new version switches atomically.

A snapshot is a small hash (`v:<n>`: version, meta, the names of its parts) plus one string
key per part (the model, each bootstrap replica), zstd-compressed. The parts are first
written to temporary keys, one command each, so a large snapshot (a Thompson model at a
million items is ~9 x 4 MB) never blocks Redis for long; a Lua script then renames them
into place and moves `latest`, so a reader sees either the whole new version or the old one.
(Releases before this layout stored the parts inline in the hash; they are still read, but
an older release cannot read snapshots written by this one. Parts were zlib-compressed
before 5 December 2026; those are still read. zstd at its default level: at 1M items, a
Thompson snapshot's 9 parts (10.7 MB) compressed to 6.1 MB in 50 ms and decompressed in
12 ms, against zlib's 6.9 MB in 180 ms and 48 ms: time every worker spent on each snapshot
it adopted, its requests waiting.)
"""

from __future__ import annotations

import json
import secrets
import time
import zlib

import zstandard

from store.base import guarded, text

CODEC = "zstd"
ZSTD_LEVEL = 3  # zstd's default

# KEYS: seq, latest, versions, version-key prefix (all under the {model} hash tag).
# ARGV: expected latest (-1: any), keep, number of parts, the temporary part keys, then
# field/value pairs of the snapshot hash. `latest` only ever moves up. Part i of version n
# is renamed to `<prefix><n>:p<i>`; dropping a version drops its parts.
_PUT = """
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local expect = tonumber(ARGV[1])
local nparts = tonumber(ARGV[3])
if expect >= 0 and latest ~= expect then
  for i = 1, nparts do redis.call('UNLINK', ARGV[3 + i]) end
  return -1
end
for i = 1, nparts do
  if redis.call('EXISTS', ARGV[3 + i]) == 0 then return -2 end
end
local version = redis.call('INCR', KEYS[1])
local fields = {'version', version, 'parts', nparts}
for i = 4 + nparts, #ARGV do fields[#fields + 1] = ARGV[i] end
for i = 1, nparts do
  local part = KEYS[4] .. version .. ':p' .. (i - 1)
  redis.call('RENAME', ARGV[3 + i], part)
  redis.call('PERSIST', part)
end
redis.call('HSET', KEYS[4] .. version, unpack(fields))
redis.call('ZADD', KEYS[3], version, tostring(version))
if version > latest then redis.call('SET', KEYS[2], version) end
local keep = tonumber(ARGV[2])
local stale = redis.call('ZRANGE', KEYS[3], 0, -keep - 1)
for _, v in ipairs(stale) do
  local n = tonumber(redis.call('HGET', KEYS[4] .. v, 'parts') or '0')
  for i = 0, n - 1 do redis.call('UNLINK', KEYS[4] .. v .. ':p' .. i) end
  redis.call('UNLINK', KEYS[4] .. v)
  redis.call('ZREM', KEYS[3], v)
end
return version
"""

STAGING_TTL_S = 600  # a writer that dies between staging and switching leaves nothing behind for long


class SnapshotOps:
    def _mkey(self, *parts: str) -> str:
        return self.key("model", "{model}", *parts)

    @guarded
    def put_snapshot(self, blob: bytes, meta: dict, keep: int, replicas: list[bytes] = (),
                     expect_latest: int | None = None) -> int | None:
        """Store a model snapshot (and its bootstrap replicas) under the next version, atomically;
        versions older than `keep` are dropped. With `expect_latest`, only if the newest version
        is still that one (else None: someone else wrote one meanwhile, e.g. a rollback)."""
        token = secrets.token_hex(8)
        staged = []
        try:
            for i, part in enumerate(packed((blob, *replicas))):  # one command per part: Redis serves others meanwhile
                key = self._mkey("tmp", token, str(i))
                staged.append(key)
                self.client.set(key, part, ex=STAGING_TTL_S)
        except Exception:
            try:  # do not leave megabytes behind for the staging TTL
                for key in staged:
                    self.client.unlink(key)
            except Exception:
                pass
            raise
        info = json.dumps({**meta, "created_at": time.time(), "replicas": len(replicas), "codec": CODEC})
        version = self._put(keys=[self._mkey("seq"), self._mkey("latest"), self._mkey("versions"), self._mkey("v", "")],
                            args=[-1 if expect_latest is None else int(expect_latest), int(keep), len(staged),
                                  *staged, b"meta", info.encode()])
        if int(version) == -2:
            raise RuntimeError("a staged snapshot part expired before it was switched in")
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
        for _ in range(5):  # with a small `keep`, the version we read may be pruned under us
            version = self.client.get(self._mkey("latest"))
            if version is None:
                return None
            snapshot = self.get_snapshot(int(version))
            if snapshot is not None:
                return snapshot
            if self.client.get(self._mkey("latest")) == version:
                break  # not a race: that version is broken (a part lost in a partial restore, say)
        for v in reversed(self.client.zrange(self._mkey("versions"), 0, -1)):  # the newest intact one
            snapshot = self.get_snapshot(int(v))
            if snapshot is not None:
                return snapshot
        return None

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
        if b"parts" not in raw:  # written before snapshots had parts: blobs inline, uncompressed
            meta["replica_blobs"] = [raw[f"r{i}".encode()] for i in range(meta.get("replicas", 0))]
            return raw[b"blob"], meta
        pipe = self.client.pipeline(transaction=False)
        for i in range(int(raw[b"parts"])):
            pipe.get(self._mkey("v", f"{version}:p{i}"))
        parts = pipe.execute()
        if any(p is None for p in parts):
            return None  # pruned while we read it
        parts = unpacked(parts, meta.pop("codec", None))
        meta["replica_blobs"] = parts[1:]
        return parts[0], meta

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


def packed(parts):
    """Model parts (a snapshot's, a canary's copy) compressed with `CODEC`, one by one."""
    packer = zstandard.ZstdCompressor(level=ZSTD_LEVEL)  # (not thread-safe: one per call)
    return (packer.compress(part) for part in parts)


def unpacked(parts: list[bytes], codec: str | None) -> list[bytes]:
    """A snapshot's parts as written: zstd (now), zlib (before 5 December 2026), or as they are
    (no codec). An unknown codec is an error here rather than bytes VW cannot read."""
    if codec == CODEC:
        unpacker = zstandard.ZstdDecompressor()
        return [unpacker.decompress(p) for p in parts]
    if codec == "zlib":
        return [zlib.decompress(p) for p in parts]
    if codec is None:  # written before parts were compressed
        return parts
    raise ValueError(f"model snapshot parts compressed with {codec!r}, which this release cannot read "
                     "(written by a newer one?)")
