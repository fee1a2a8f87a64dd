"""Decisions, the rewards that refer to them, and which rewards were learned."""

from __future__ import annotations

import json

from store.base import guarded, guarded_fast, text

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


class DecisionOps:
    def _ekey(self, kind: str, event_id: str) -> str:
        return self.key(kind, "{" + event_id + "}")

    @guarded_fast
    def put_decision(self, event_id: str, decision: dict, ttl_s: float) -> bool:
        """Store a decision unless the event_id exists already; False on a clash (request timeout)."""
        return bool(self.fast.set(self._ekey("dec", event_id), json.dumps(decision), nx=True,
                                  px=max(1, int(ttl_s * 1000))))

    @guarded
    def feedback_state(self, event_id: str, item_id: str) -> tuple[dict | None, str | None]:
        """The decision (or None) and the reward-stream id already acknowledged for this item."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self._ekey("dec", event_id))
        pipe.hget(self._ekey("ack", event_id), item_id)
        raw, acked = pipe.execute()
        return (json.loads(raw) if raw else None), text(acked)

    @guarded
    def append_reward(self, entry: dict, maxlen: int) -> str:
        """Durably append a reward; the returned stream id orders it for the learner."""
        return text(self.client.xadd(self.key("rewards"), {"e": json.dumps(entry)}, maxlen=maxlen,
                                     approximate=True))

    @guarded
    def mark_acked(self, event_id: str, item_id: str, stream_id: str, ttl_s: float) -> None:
        key = self._ekey("ack", event_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, item_id, stream_id)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))
        pipe.execute()

    @guarded
    def read_rewards(self, after: str = "0-0", count: int = 1000) -> list[tuple[str, dict]]:
        return [(text(sid), json.loads(fields[b"e"]))
                for sid, fields in self.client.xrange(self.key("rewards"), min=f"({after}", count=count)]

    @guarded
    def reward_count(self) -> int:
        return int(self.client.xlen(self.key("rewards")))

    @guarded
    def claim_rewards(self, batch: list[tuple[str, dict]], ttl_s: float) -> list[bool]:
        """For each (stream_id, entry): may it be learned? The first stream entry of an
        (event_id, item_id) wins, and keeps winning on replay; later duplicates lose."""
        pipe = self.client.pipeline(transaction=False)
        for sid, entry in batch:
            self._claim(keys=[self._ekey("learned", str(entry.get("event_id")))],
                        args=[str(entry.get("item_id")), sid, max(1, int(ttl_s))], client=pipe)
        return [bool(r) for r in pipe.execute()]

    @guarded
    def dead_letter(self, stream_id: str, entry: dict, error: str, maxlen: int = 100_000) -> None:
        """Keep a reward that could not be learned, for a person to look at."""
        self.client.xadd(self.key("rewards", "dead"), {"id": stream_id, "e": json.dumps(entry), "error": error},
                         maxlen=maxlen, approximate=True)

    @guarded
    def dead_letters(self) -> list[dict]:
        return [{"id": text(f[b"id"]), "entry": json.loads(f[b"e"]), "error": text(f[b"error"])}
                for _, f in self.client.xrange(self.key("rewards", "dead"))]
