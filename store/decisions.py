"""Decisions, the rewards that refer to them, and which rewards were learned."""

from __future__ import annotations

import logging

import redis

from banditrec import fastjson
from store.base import guarded, guarded_fast, in_pipeline, text

log = logging.getLogger(__name__)

_CLAIM = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
if cur == ARGV[2] then return 2 end
return 0
"""


_AGGREGATE = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local new = tonumber(ARGV[2])
if cur then
  if ARGV[3] == 'sum' then new = cur + new elseif new < cur then new = cur end
end
redis.call('HSET', KEYS[1], ARGV[1], tostring(new))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class DecisionOps:
    def _ekey(self, kind: str, event_id: str) -> str:
        return self.key(kind, "{" + event_id + "}")

    @guarded_fast
    def put_decision(self, event_id: str, decision: dict, ttl_s: float, close_at: float | None = None,
                     log_entry: dict | None = None, log_maxlen: int = 100_000,
                     arm: tuple[str, str, dict] | list[tuple[str, str, dict]] | None = None,
                     shown: list[tuple[str, int, float]] = (), unique: bool = False) -> bool:
        """Store a decision unless the event_id exists already; False on a clash (request timeout).
        With `close_at`, the decision is also queued to be closed (default rewards) then; with
        `log_entry`, it is appended to the decision log (for off-policy evaluation); with `arm`
        (salt, arm, counters), or a list of them, the experiment's counters of that arm are incremented; `shown`
        (item_id, position, exposure weight) is counted as the items' live exposure.
        `unique`: the event_id was made for this decision (a random uuid4, not the client's), so
        it cannot clash and the log and counters go in the same round trip (a SET that finds it
        stored is our own write, resent: never a 409); a client's id is stored first, and the
        rest is written only once it did not clash."""
        pipe = self.fast.pipeline(transaction=False)
        pipe.set(self._ekey("dec", event_id), fastjson.dumps(decision), nx=True, px=max(1, int(ttl_s * 1000)))
        if close_at is not None:  # queued also on a clash: closing a decision twice is harmless
            pipe.zadd(self.key("pending"), {event_id: close_at}, nx=True)
        if not unique:
            if not pipe.execute()[0]:
                return False
            pipe = self.fast.pipeline(transaction=False)
        own = len(pipe)  # the decision's own commands, when they share the round trip
        self._queue_logged(pipe, log_entry, log_maxlen, arm, shown)
        if not len(pipe):
            return True
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            if own:
                raise  # nothing is known to be stored: the decorator makes it a StoreError
            replies = [exc]
        refused = [r for r in replies[:own] if isinstance(r, Exception)]
        if refused:  # the decision or its close: a degraded answer, as when they go first
            raise refused[0]
        failed = [r for r in replies[own:] if isinstance(r, Exception)]
        if failed:  # the decision is stored: the log and counters are not worth a degraded answer
            log.warning("decision %s stored; its log entry or counters were not: %s", event_id, failed[0])
        if own and not replies[0]:  # a uuid4 does not clash: our own write, resent (a cluster client's retry)
            log.warning("decision %s was stored already (a retried write)", event_id)
        return True

    def _queue_logged(self, pipe, log_entry, log_maxlen, arm, shown) -> None:
        """Queue what a stored decision adds: its log entry, its arms' counters, its exposure."""
        if log_entry is not None:
            pipe.xadd(self.key("decisions"), {"d": fastjson.dumps(log_entry)}, maxlen=log_maxlen, approximate=True)
        for one in [arm] if isinstance(arm, tuple) else arm or ():
            self.queue_arm_counts(pipe, *one)
        if shown:
            self.queue_shown(pipe, shown)

    @guarded
    def read_decision_log(self, after: str = "0-0", count: int = 5000) -> list[tuple[str, dict]]:
        return [(text(sid), fastjson.loads(f[b"d"]))
                for sid, f in self.client.xrange(self.key("decisions"), min=f"({after}", count=count)]

    def iter_decision_log(self, after: str = "0-0"):
        while batch := self.read_decision_log(after):
            yield from batch
            after = batch[-1][0]

    def iter_rewards(self, after: str = "0-0"):
        while batch := self.read_rewards(after, 5000):
            yield from batch
            after = batch[-1][0]

    @guarded
    def mark_seen(self, event_id: str, item_ids: list[str], ttl_s: float) -> None:
        key = self._ekey("seen", event_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(key, *item_ids)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))
        pipe.execute()

    @guarded
    def waiting(self) -> tuple[int, float | None]:
        """Decisions whose rewards are not learned yet (their wait is not over, or they are
        not closed yet), and when the first of them is due to close (None: none waits)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self.key("pending"))
        pipe.zrange(self.key("pending"), 0, 0, withscores=True)
        count, first = pipe.execute()
        return int(count), (float(first[0][1]) if first else None)

    @guarded
    def due_decisions(self, now: float, n: int) -> list[str]:
        return [text(e) for e in self.client.zrangebyscore(self.key("pending"), "-inf", now, start=0, num=n)]

    @guarded
    def closing_states(self, event_ids: list[str]) -> list[tuple[dict | None, set[str], set[str], dict[str, float]]]:
        """Decisions about to be closed: each, its items rewarded, items seen, aggregates."""
        pipe = self.client.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.get(self._ekey("dec", event_id))
            pipe.hkeys(self._ekey("ack", event_id))
            pipe.smembers(self._ekey("seen", event_id))
            pipe.hgetall(self._ekey("agg", event_id))
        raw = pipe.execute()
        out = []
        for i in range(0, len(raw), 4):
            decision, acked, seen, agg = raw[i:i + 4]
            out.append(((fastjson.loads(decision) if decision else None), {text(a) for a in acked},
                        {text(s) for s in seen}, {text(k): float(v) for k, v in agg.items()}))
        return out

    @guarded
    def append_rewards(self, entries: list[dict], maxlen: int) -> None:
        """Durably append several rewards in one round trip, in order."""
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            pipe.xadd(self.key("rewards"), {"e": fastjson.dumps(entry)}, maxlen=maxlen, approximate=True)
        pipe.execute()

    @guarded
    def close_decisions(self, event_ids: list[str]) -> None:
        if event_ids:
            self.client.zrem(self.key("pending"), *event_ids)

    @guarded
    def count_labelled(self, item_ids: list[str]) -> None:
        """One more labelled impression (a reward learned, default ones included) per item."""
        pipe = self.client.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hincrby(self.key("labelled"), item_id, 1)
        pipe.execute()

    @guarded_fast
    def labelled(self, item_ids: list[str]) -> list[int]:
        if not item_ids:
            return []
        return [int(v or 0) for v in self.fast.hmget(self.key("labelled"), item_ids)]

    @guarded
    def feedback_state(self, event_id: str, item_id: str) -> tuple[dict | None, str | None]:
        """The decision (or None) and the reward-stream id already acknowledged for this item."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self._ekey("dec", event_id))
        pipe.hget(self._ekey("ack", event_id), item_id)
        raw, acked = pipe.execute()
        return (fastjson.loads(raw) if raw else None), text(acked)

    @guarded
    def append_reward(self, entry: dict, maxlen: int) -> str:
        """Durably append a reward; the returned stream id orders it for the learner."""
        return text(self.client.xadd(self.key("rewards"), {"e": fastjson.dumps(entry)}, maxlen=maxlen,
                                     approximate=True))

    @guarded
    def mark_acked(self, event_id: str, item_id: str, stream_id: str, ttl_s: float, *,
                   aggregate: tuple[float, str] | None = None, click: bool = False) -> bool:
        """After a reward was appended (`append_reward`), in one round trip: fold it into the
        pair's running sum or max (`aggregate`: (reward, "sum" | "max"), the sum/max aggregation
        modes), mark the pair acknowledged with its stream id, and with `click`, tell whether it
        is the pair's first click (`ExperimentOps.queue_first_click`; False without `click`)."""
        key = self._ekey("ack", event_id)
        pipe = self.client.pipeline(transaction=False)
        if aggregate is not None:
            in_pipeline(self._aggregate, pipe, [self._ekey("agg", event_id)],
                        [item_id, repr(float(aggregate[0])), aggregate[1], int(ttl_s * 1000)])
        pipe.hset(key, item_id, stream_id)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))
        if click:
            self.queue_first_click(pipe, event_id, item_id, ttl_s)
        answers = pipe.execute()
        return bool(answers[-2]) if click else False

    @guarded
    def read_rewards(self, after: str = "0-0", count: int = 1000) -> list[tuple[str, dict]]:
        return [(text(sid), fastjson.loads(fields[b"e"]))
                for sid, fields in self.client.xrange(self.key("rewards"), min=f"({after}", count=count)]

    @guarded
    def reward_backlog(self, after: str, cap: int = 1000) -> tuple[int, float | None]:
        """(entries after `after`, counted up to `cap`; unix time of the oldest of them or None)."""
        ids = [text(sid) for sid, _ in self.client.xrange(self.key("rewards"), min=f"({after}", count=cap)]
        return len(ids), (int(ids[0].split("-")[0]) / 1000.0 if ids else None)

    @guarded
    def wait_rewards(self, after: str, block_ms: int = 200) -> bool:
        """Block up to `block_ms` for a reward-stream entry after `after`; True if there is one.
        (Keep `block_ms` below `redis.socket_timeout_ms`.)"""
        return bool(self.client.xread({self.key("rewards"): after}, count=1, block=max(1, int(block_ms))))

    @guarded
    def reward_count(self) -> int:
        return int(self.client.xlen(self.key("rewards")))

    @guarded
    def claim_rewards(self, batch: list[tuple[str, dict]], ttl_s: float) -> list[int]:
        """For each (stream_id, entry): may it be learned? The first stream entry of an
        (event_id, item_id) wins (1), and keeps winning on replay (2); later duplicates lose (0)."""
        pipe = self.client.pipeline(transaction=False)
        for sid, entry in batch:
            in_pipeline(self._claim, pipe, [self._ekey("learned", str(entry.get("event_id")))],
                        [str(entry.get("item_id")), sid, max(1, int(ttl_s))])
        return [int(r) for r in pipe.execute()]

    @guarded
    def dead_letter(self, stream_id: str, entry: dict, error: str, maxlen: int = 100_000) -> None:
        """Keep a reward that could not be learned, for a person to look at."""
        self.client.xadd(self.key("rewards", "dead"), {"id": stream_id, "e": fastjson.dumps(entry), "error": error},
                         maxlen=maxlen, approximate=True)

    @guarded
    def dead_letter_count(self) -> int:
        """How many rewards are set aside as not learnable (the list keeps the newest ~100,000)."""
        return int(self.client.xlen(self.key("rewards", "dead")))

    @guarded
    def dead_letters(self) -> list[dict]:
        return [{"id": text(f[b"id"]), "entry": fastjson.loads(f[b"e"]), "error": text(f[b"error"])}
                for _, f in self.client.xrange(self.key("rewards", "dead"))]
