"""The canary's record and model: one candidate served to a share of users beside the current
model, until it is promoted or aborted. The candidate is a model snapshot (kind "model") or an
exploration config served with the current model (kind "exploration").

The record is a small hash (`model:{model}:canary`: id, kind, version, share, status, times,
the snapshot's meta or the exploration section) and a model canary's model a copy of the
snapshot's parts (`...:canary:<id>:p<i>`), so that pruning old versions (`snapshot.keep`) or
a rollback never takes a running canary's model away. A canary starts only when none is
running and ends once: both are compare-and-set scripts on the record, so that of several
workers applying the automatic rule at the same moment, one ends it and the others see it
ended.
"""

from __future__ import annotations

import json
import secrets
import time

from store.base import guarded, text
from store.snapshots import CODEC, packed, unpacked

# KEYS[1]: the record. ARGV: field/value pairs of the new record. 1 if started, 0 if one is running.
_START = """
if redis.call('HGET', KEYS[1], 'status') == 'running' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1]: the record. ARGV: id, the statuses it may end from (comma-separated), the new status,
# a time ('' for none: a "promoting" record may be taken over only if it entered that status
# before it), then field/value pairs to set. 1 if this call ended it, 0 if not (another id, or
# not in one of those statuses: someone else ended it first, or a promotion is under way).
_END = """
local status = redis.call('HGET', KEYS[1], 'status')
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] or not status then return 0 end
if not string.find(',' .. ARGV[2] .. ',', ',' .. status .. ',', 1, true) then return 0 end
if status == 'promoting' and ARGV[4] ~= '' and
        tonumber(redis.call('HGET', KEYS[1], 'ended_at') or '0') >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
return 1
"""

MODEL, EXPLORATION = "model", "exploration"  # what a canary tries: a snapshot, or an exploration config
# KEYS[1]: the record. ARGV: id, the serving config's [exploration] (JSON). Kept if none was yet.
_BASE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
return redis.call('HSETNX', KEYS[1], 'base', ARGV[2])
"""

RUNNING = "running"
PROMOTING = "promoting"
PROMOTING_STALE_S = 300.0  # a promotion not finished by then is taken to have died with its process


class CanaryExists(RuntimeError):
    """A canary is running already: promote or abort it first."""


class CanaryOps:
    def _ckey(self, *parts: str) -> str:
        return self._mkey("canary", *parts)

    @guarded
    def start_canary(self, version: int | None, share: float, *, exploration: dict | None = None) -> dict:
        """Start serving snapshot `version` to `share` of users as the canary, or (with
        `exploration`, an `[exploration]` section as the config file writes it) that exploration
        with the current model; its record. Raises KeyError (no such snapshot) or CanaryExists."""
        canary_id = secrets.token_hex(4)
        if exploration is not None:  # nothing to copy: the current model serves it
            parts, meta, kind, version = [], {}, EXPLORATION, self.latest_version()
        else:
            snapshot = self.get_snapshot(version)
            if snapshot is None:
                raise KeyError(version)
            blob, meta = snapshot
            replicas = meta.pop("replica_blobs")
            parts, kind = [self._ckey(canary_id, f"p{i}") for i in range(1 + len(replicas))], MODEL
            self.client.hset(self._ckey("models"), canary_id, len(parts))  # first: a start cut short is cleaned up
            for key, part in zip(parts, packed((blob, *replicas))):  # one command each: Redis serves others meanwhile
                self.client.set(key, part)
        record = {"id": canary_id, "kind": kind, "version": int(version), "share": repr(float(share)),
                  "status": RUNNING, "started_at": repr(time.time()), "parts": len(parts), "codec": CODEC,
                  "meta": json.dumps(meta),
                  "exploration": json.dumps(exploration)}
        if not self._canary_start(keys=[self._ckey()], args=[x for kv in record.items() for x in kv]):
            self.drop_canary_model(canary_id)
            raise CanaryExists("a canary is running: promote or abort it first (`banditrec canary status`)")
        for old in self.client.hkeys(self._ckey("models")):  # ended canaries' copies, if their end did not drop them
            if text(old) != canary_id:
                self.drop_canary_model(text(old))
        return self.canary()

    @guarded
    def canary(self) -> dict | None:
        """The last canary's record (running or ended), or None if there never was one."""
        raw = {text(k): text(v) for k, v in self.client.hgetall(self._ckey()).items()}
        if not raw:
            return None
        return {"id": raw["id"], "kind": raw.get("kind", MODEL), "version": int(raw["version"]),
                "exploration": json.loads(raw.get("exploration", "null")), "base": json.loads(raw.get("base", "null")),
                "share": float(raw["share"]),
                "status": raw["status"], "started_at": float(raw["started_at"]),
                "ended_at": float(raw["ended_at"]) if "ended_at" in raw else None,
                "reason": raw.get("reason", ""), "promoted_as": int(raw["promoted_as"]) if "promoted_as" in raw
                else None, "parts": int(raw["parts"]), "meta": json.loads(raw["meta"]),
                "codec": raw.get("codec", "zlib")}  # (canaries started before 5 December 2026: zlib)

    @guarded
    def note_canary_base(self, canary_id: str, base: dict) -> None:
        """An exploration canary's users get it instead of `base`, the serving processes'
        config file's [exploration]: what a promotion applies over (the first process to note
        it wins)."""
        self._canary_base(keys=[self._ckey()], args=[canary_id, json.dumps(base, sort_keys=True)])

    @guarded
    def canary_model(self, record: dict) -> tuple[bytes, dict] | None:
        """(model blob, meta with "replica_blobs") of a canary, as `get_snapshot` gives a
        snapshot; None once its parts are gone (it ended)."""
        pipe = self.client.pipeline(transaction=False)
        for i in range(record["parts"]):
            pipe.get(self._ckey(record["id"], f"p{i}"))
        parts = pipe.execute()
        if any(p is None for p in parts):
            return None
        parts = unpacked(parts, record["codec"])
        return parts[0], {**record["meta"], "version": record["version"], "replica_blobs": parts[1:]}

    @guarded
    def end_canary(self, canary_id: str, status: str, reason: str, *, from_statuses: tuple[str, ...] = (RUNNING,),
                   stale_before: float | None = None, **fields) -> bool:
        """End the canary `canary_id` with `status` ("promoted", "aborted", ...) if it is in one
        of `from_statuses`; True if this call ended it. With `stale_before`, a "promoting"
        record among them is taken over only if its promotion started before that time (its
        process died; one that is still at work is left to finish)."""
        values = {"ended_at": repr(time.time()), "reason": reason, **{k: str(v) for k, v in fields.items()}}
        return bool(self._canary_end(keys=[self._ckey()], args=[
            canary_id, ",".join(from_statuses), status, "" if stale_before is None else repr(stale_before),
            *(x for kv in values.items() for x in kv)]))

    @guarded
    def drop_canary_model(self, canary_id: str) -> None:
        """Delete an ended canary's copy of its model."""
        n = int(self.client.hget(self._ckey("models"), canary_id) or 0)
        if n:
            self.client.unlink(*(self._ckey(canary_id, f"p{i}") for i in range(n)))
        self.client.hdel(self._ckey("models"), canary_id)
