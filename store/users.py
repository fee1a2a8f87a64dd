"""User state: profile, long-term vectors (one per embedding space), session, recent events, seen items.

All keys of one user share the hash tag `{user_id}`, so they can change in one transaction.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np

from store.base import guarded, text

PROFILE_FIELDS = ("age_group", "location", "signup_source")


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
            mapping = {}
            for name, value in fields.items():
                if name == "vector":
                    mapping[f"vec:{space}"] = np.asarray(value, dtype=np.float32).tobytes()
                elif name == "taste":
                    mapping["taste"] = json.dumps(list(value))
                elif value is not None:
                    mapping[name] = value
            if mapping:
                pipe.hset(key, mapping=mapping)
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
        return count

    @guarded
    def put_profile(self, user_id: str, profile: dict) -> None:
        """Replace the user's profile fields (other state stays)."""
        key = self._ukey("user", user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(key, *PROFILE_FIELDS)
        if profile:
            pipe.hset(key, mapping=profile)
        pipe.execute()

    @guarded
    def user_state(self, user_id: str, fast: bool = True) -> dict | None:
        """Everything the request path needs about a user, in one round trip (with `fast`, under
        the request timeout)."""
        pipe = (self.fast if fast else self.client).pipeline(transaction=False)
        pipe.hgetall(self._ukey("user", user_id))
        pipe.lrange(self._ukey("recent", user_id), 0, -1)
        pipe.zrange(self._ukey("seen", user_id), 0, -1)
        raw, recent, seen = pipe.execute()
        if not raw and not recent:
            return None
        return decode_user(raw, recent, seen)

    def get_user(self, user_id: str) -> dict | None:
        return self.user_state(user_id)

    @guarded
    def record_user_event(self, user_id: str, *, entry: dict, fields: dict, recent_n: int, recent_ttl_s: float,
                          seen: tuple[str, float] | None, seen_max: int, seen_ttl_s: float) -> None:
        """Apply one event to the user's state atomically: fields (vectors, timestamps), one more
        interaction, the recent-events list and, for consuming events, the seen set."""
        user, recent = self._ukey("user", user_id), self._ukey("recent", user_id)
        pipe = self.client.pipeline(transaction=True)
        if fields:
            pipe.hset(user, mapping=fields)
        pipe.hincrby(user, "n", 1)
        pipe.lpush(recent, json.dumps(entry))
        pipe.ltrim(recent, 0, recent_n - 1)
        pipe.pexpire(recent, int(recent_ttl_s * 1000))
        if seen is not None:
            key = self._ukey("seen", user_id)
            pipe.zadd(key, {seen[0]: seen[1]})
            pipe.zremrangebyrank(key, 0, -seen_max - 1)
            pipe.pexpire(key, int(seen_ttl_s * 1000))
        pipe.execute()


def decode_user(raw: dict, recent: list, seen: list) -> dict:
    state = {"profile": {}, "vectors": {}, "taste": [], "n": 0, "last": None, "session": None,
             "recent": [json.loads(r) for r in recent], "seen": {text(s) for s in seen}}
    fields = {text(k): v for k, v in raw.items()}
    for name, value in fields.items():
        if name.startswith("vec:"):
            state["vectors"][name[4:]] = np.frombuffer(value, dtype=np.float32)
        elif name in PROFILE_FIELDS:
            state["profile"][name] = text(value)
    if "taste" in fields:
        state["taste"] = json.loads(fields["taste"])
    if "n" in fields:
        state["n"] = int(fields["n"])
    if "last" in fields:
        state["last"] = float(fields["last"])
    if "svec" in fields and "sts" in fields:
        state["session"] = (np.frombuffer(fields["svec"], dtype=np.float32), text(fields.get("sspace", b"")),
                            float(fields["sts"]))
    return state
