"""User state: profile, long-term vectors (one per embedding space), recent events, seen items.

All keys of one user share the hash tag `{user_id}`, so they can change in one transaction.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np

from banditrec import fastjson
from store.base import guarded, guarded_fast, in_pipeline, text
from store.once import Once, mark

PROFILE_FIELDS = ("age_group", "location", "signup_source")
UNREAD = object()  # `update_user_vector`: no vector read beforehand
VECTOR_STEP = "vector"  # `update_user_vector`'s step, as `store.once` marks it done

# Fields that only grow: a build's count must not undo events recorded while it ran.
_SET_MAX = """
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  local new = tonumber(ARGV[i + 1])
  if (not cur) or new > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""

# A long-term vector replaced only if it is still the one the new value was computed from
# (ARGV[2] "1" and its bytes in ARGV[3], or "0": there was none); with a marker key, the
# step's mark (`store.once`) in the same call.
_SET_IF = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if #KEYS > 1 then
  redis.call('HSET', KEYS[2], ARGV[6], 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1
"""  # KEYS: the user, the event's marker (optional); ARGV: field, had one, old bytes, new bytes, marker ttl ms,
# the step's name (as `store.once.mark` marks it)


class UserOps:
    def _ukey(self, kind: str, user_id: str) -> str:
        return self.key(kind, "{" + user_id + "}")

    @guarded
    def put_users(self, users: Iterable[tuple[str, dict]], space: str, drop_spaces: Iterable[str] = (),
                  chunk: int = 1000) -> int:
        """Write what a build computed per user: `vector` (in `space`), `taste`, `n`, `last`, profile.
        Vectors of `drop_spaces` and the old taste go; fields the build does not own stay."""
        drop = ["taste", *(f"vec:{s}" for s in drop_spaces if s != space)]
        count = 0
        pipe = self.client.pipeline(transaction=False)
        for user_id, fields in users:
            key = self._ukey("user", user_id)
            pipe.hdel(key, f"vec:{space}", *drop)
            mapping, grow = {}, []
            for name, value in fields.items():
                if name == "vector":
                    mapping[f"vec:{space}"] = np.asarray(value, dtype=np.float32).tobytes()
                elif name == "taste":
                    mapping["taste"] = json.dumps(list(value))
                elif name in ("n", "last"):
                    grow += [name, repr(value)]
                elif value is not None:
                    mapping[name] = value
            if mapping:
                pipe.hset(key, mapping=mapping)
            if grow:
                in_pipeline(self._set_max, pipe, [key], grow)
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
        return count

    @guarded
    def profiles(self, user_ids: list[str]) -> list[dict]:
        """The stored profile of each user ({} if none)."""
        pipe = self.client.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(self._ukey("user", user_id), *PROFILE_FIELDS)
        return [{f: text(v) for f, v in zip(PROFILE_FIELDS, values) if v is not None} for values in pipe.execute()]

    @guarded
    def put_profile(self, user_id: str, profile: dict, preferences: dict | None = None) -> None:
        """Replace the user's profile fields and onboarding preferences (other state stays)."""
        key = self._ukey("user", user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(key, *PROFILE_FIELDS, "prefs")
        mapping = {**profile, **({"prefs": json.dumps(preferences)} if preferences else {})}
        if mapping:
            pipe.hset(key, mapping=mapping)
        pipe.execute()

    def user_state(self, user_id: str, fast: bool = True) -> dict | None:
        """Everything the request path needs about a user, in one round trip (with `fast`, under
        the request timeout)."""
        return (self._user_state_fast if fast else self._user_state)(user_id)

    @guarded_fast
    def _user_state_fast(self, user_id):
        return self._read_user(self.fast, user_id)

    @guarded
    def _user_state(self, user_id):
        return self._read_user(self.client, user_id)

    def _read_user(self, client, user_id):
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(self._ukey("user", user_id))
        pipe.lrange(self._ukey("recent", user_id), 0, -1)
        pipe.zrange(self._ukey("seen", user_id), 0, -1)
        raw, recent, seen = pipe.execute()
        if not raw and not recent:
            return None
        return decode_user(raw, recent, seen)

    @guarded
    def record_user_event(self, user_id: str, *, entry: dict, ts: float, recent_n: int, recent_ttl_s: float,
                          seen: tuple[str, float] | None, seen_max: int, seen_ttl_s: float,
                          drop_pregen: bool = False, once: Once | None = None,
                          vector_of: str | None = None) -> tuple[dict, bytes | None]:
        """Apply one event to the user's state atomically: one more interaction, the last-event
        time (never moved back by a late event), the recent-events list, for consuming events
        the seen set, and (the user is active) no pre-generated slate. Returns the profile and,
        with `vector_of` (a space), the long-term vector's bytes as they were (None: none), for
        `update_user_vector` to step without reading them again."""
        user, recent = self._ukey("user", user_id), self._ukey("recent", user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(user, *PROFILE_FIELDS, *((f"vec:{vector_of}",) if vector_of is not None else ()))
        if drop_pregen:
            pipe.delete(self._ukey("pregen", user_id))
        pipe.hincrby(user, "n", 1)
        in_pipeline(self._set_max, pipe, [user], ["last", repr(float(ts))])
        pipe.lpush(recent, fastjson.dumps(entry))
        pipe.ltrim(recent, 0, recent_n - 1)
        pipe.pexpire(recent, int(recent_ttl_s * 1000))
        if seen is not None:
            key = self._ukey("seen", user_id)
            pipe.zadd(key, {seen[0]: seen[1]})
            pipe.zremrangebyrank(key, 0, -seen_max - 1)
            pipe.pexpire(key, int(seen_ttl_s * 1000))
        mark(pipe, once, "user")
        fields = pipe.execute()[0]
        profile = {f: text(v) for f, v in zip(PROFILE_FIELDS, fields) if v is not None}
        return profile, fields[len(PROFILE_FIELDS)] if vector_of is not None else None

    @guarded
    def update_user_vector(self, user_id: str, space: str, step, retries: int = 20, once: Once | None = None,
                           old=UNREAD) -> bool:
        """Replace the long-term vector of `space` by `step(old or None)` (None: leave it),
        optimistically: it is written only if it is still `old`, else read and stepped again,
        so that concurrent events do not overwrite each other. Two round trips (a read, then
        a compare-and-set script): WATCH, HGET and MULTI/EXEC were three, and the watch on
        the whole user hash also failed when another field of it changed (its count, its
        last event). `old`: the vector's bytes (or None) as just read with the event
        (`record_user_event`): the first attempt steps them without reading them again."""
        key, field = self._ukey("user", user_id), f"vec:{space}"
        for _ in range(retries):
            raw, old = (self.client.hget(key, field) if old is UNREAD else old), UNREAD
            written = self._vector_step(user_id, space, step, raw, once)
            if written is None:
                return False
            keys, args = written
            if self._set_if(keys=keys, args=args):
                return True
        return False

    def queue_vector_step(self, pipe, user_id: str, space: str, step, old: bytes | None,
                          once: Once | None = None) -> bool:
        """Queue `update_user_vector`'s first attempt on `pipe`, from the vector's bytes `old` as
        just read (its answer: 1 written, 0 the vector moved meanwhile: call `update_user_vector`).
        False, and nothing queued, if the step leaves the vector as it is."""
        written = self._vector_step(user_id, space, step, old, once)
        if written is not None:
            in_pipeline(self._set_if, pipe, *written)
        return written is not None

    def _vector_step(self, user_id: str, space: str, step, raw: bytes | None, once: Once | None):
        """The compare-and-set script's keys and arguments that write `step(raw)` over `raw`
        (None: the step leaves it)."""
        new = step(None if raw is None else np.frombuffer(raw, dtype=np.float32))
        if new is None:
            return None
        key = self._ukey("user", user_id)
        args = [f"vec:{space}", "0" if raw is None else "1", raw or b"", np.asarray(new, dtype=np.float32).tobytes(),
                once.ttl_ms if once is not None else 0, VECTOR_STEP]
        return ([key] if once is None else [key, once.key]), args


def decode_user(raw: dict, recent: list, seen: list) -> dict:
    state = {"profile": {}, "vectors": {}, "taste": [], "n": 0, "last": None,
             "recent": [fastjson.loads(r) for r in recent], "seen": {text(s) for s in seen}}
    fields = {text(k): v for k, v in raw.items()}
    for name, value in fields.items():
        if name.startswith("vec:"):
            state["vectors"][name[4:]] = np.frombuffer(value, dtype=np.float32)
        elif name in PROFILE_FIELDS:
            state["profile"][name] = text(value)
    if "taste" in fields:
        state["taste"] = json.loads(fields["taste"])
    if "prefs" in fields:
        state["preferences"] = json.loads(fields["prefs"])
    if "n" in fields:
        state["n"] = int(fields["n"])
    if "last" in fields:
        state["last"] = float(fields["last"])
    return state
