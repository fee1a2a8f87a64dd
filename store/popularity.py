"""Popularity rankings: long-term ones (written by the build, then counted up by every event
since), decayed "trending" counters, and per item how many events it had and how many of
them were engagements (click, add_to_cart, purchase): its quality.

An engagement the service caused is counted once: as a live reward of the slate that showed
the item (`count_engaged`, from `/feedback`). When the same click also arrives as an event
(clients send it to `/events` too, for the user's history), it is *attributed*: whichever of
the two comes second finds the other's mark and counts the item's `qa`, which the quality
counts subtract. Counted as an event as well, every click of the service would raise the
catalog's engagement share while its unclicked impressions never arrive as events.

A trending score is kept in log space: log(sum of weight x 2^(t / half_life)) over events,
updated with log-sum-exp in a script. Comparing two items' scores at any moment compares
their exponentially decayed counts, without ever rewriting old scores.
"""

from __future__ import annotations

import math
import time
import uuid

import numpy as np

from store.base import guarded, guarded_fast, in_pipeline, text
from store.counts import CountOps, position_impressions
from store.once import Once, mark

_BUMP = """
local x = tonumber(ARGV[2])
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur then
  local a = tonumber(cur)
  local m = math.max(a, x)
  x = m + math.log(math.exp(a - m) + math.exp(x - m))
end
redis.call('ZADD', KEYS[1], x, ARGV[1])
local keep = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[1]) > keep + keep / 10 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -keep - 1)
end
return 1
"""


_ATTRIBUTE = """
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[1])
  return 1
end
redis.call('SET', KEYS[2], 1, 'EX', ARGV[2])
return 0
"""  # KEYS: the other side's mark, this side's mark, the attributed counts; ARGV: item_id, mark ttl


# KEYS[1]: a global sorted set of per-item counts, KEYS[2..]: other such sets; ARGV: start, stop
# (ranks, highest score first). Returns the ranked slice's members joined by newlines (ids are
# printable: `retrieval.data.check_id`), their scores as little-endian doubles, then each other
# set's scores of them (0 where it has none) the same way, and how many members: a few strings,
# where a string per member and per score cost the reader ~0.4 ms per 1000 items.
_TOP_WITH = """
local top = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
local ids, scores = {}, {}
for i = 1, #top, 2 do
  ids[#ids + 1] = top[i]
  scores[#scores + 1] = struct.pack('<d', tonumber(top[i + 1]))
end
local out = {table.concat(ids, '\\n'), table.concat(scores)}
for k = 2, #KEYS do
  local column = {}
  for i = 1, #top, 2 do
    column[#column + 1] = struct.pack('<d', tonumber(redis.call('ZSCORE', KEYS[k], top[i]) or '0'))
  end
  out[#out + 1] = table.concat(column)
end
out[#out + 1] = #ids
return out
"""
TOP_CHUNK = 1_000  # items per command of a long top list: Redis serves others between chunks (20,000 at once: ~20 ms)


class PopularityOps(CountOps):
    def _replace(self, key: str, scores: dict[str, float]) -> None:
        """Replace one sorted set atomically (readers see the old one or the new one)."""
        tmp = key + ":tmp"
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

    @guarded
    def put_popularity(self, scores: dict[str, float], scope: str = "global") -> None:
        """Replace one long-term ranking ("global", "seg:<segment>") atomically."""
        self._replace(self._pkey("pop", scope), scores)

    @guarded
    def put_quality(self, events: dict[str, float], engaged: dict[str, float]) -> None:
        """Replace the per-item event and engagement counts (the build's, from its history)."""
        self._replace(self._pkey("qn", "global"), events)
        self._replace(self._pkey("qe", "global"), engaged)
        self.client.set(self._pkey("qepoch", "global"), uuid.uuid4().hex)  # every kept count is stale

    def _top_columns(self, ranked: str, others: tuple[str, ...], n: int,
                     scope: str = "global", pause_s: float = 0.0) -> tuple[list[str], np.ndarray]:
        """The ids of the n items with the highest scores in `ranked`, and (n, 1 + len(others))
        of their scores there and in `others`, read `TOP_CHUNK` ranks per command (one Lua call
        each), so that a read of 20,000 items never holds Redis for long; `pause_s` between
        commands (a background reader's: the threads serving requests meanwhile have the GIL
        to themselves). An item that moves across a chunk boundary meanwhile is kept once (it
        may then be missed instead)."""
        keys = [self._pkey(ranked, scope), *(self._pkey(kind, "global") for kind in others)]
        ids: list[str] = []
        parts = []
        for start in range(0, n, TOP_CHUNK):
            if start and pause_s > 0:
                time.sleep(pause_s)
            stop = min(n, start + TOP_CHUNK) - 1
            *joined, m = self._top_with_script(keys=keys, args=[start, stop], client=self.fast)
            if m:
                chunk = text(joined[0]).split("\n")
                if len(chunk) != m:
                    raise ValueError(f"an id in {keys[0]} holds a line break (ids are printable text)")
                ids += chunk
                parts.append(np.frombuffer(b"".join(joined[1:]), dtype="<f8").reshape(len(keys), m).T)
            if m < stop - start + 1:
                break
        scores = np.concatenate(parts) if parts else np.zeros((0, len(keys)))
        if len(set(ids)) < len(ids):
            seen: set[str] = set()
            first = [i for i, item_id in enumerate(ids) if not (item_id in seen or seen.add(item_id))]
            ids, scores = [ids[i] for i in first], scores[first]
        return ids, scores

    def quality_counts(self, n: int) -> list[tuple[str, float, float]]:
        """(item_id, events, engaged events) of the n items with most events, the events
        attributed to the service's slates left out (`count_engaged`, `bump_trending(attribute=...)`)."""
        ids, events, engaged = self.quality_columns(n)
        return list(zip(ids, events.tolist(), engaged.tolist()))

    @guarded_fast
    def quality_columns(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """`quality_counts` as the ids and two arrays."""
        ids, scores = self._top_columns("qn", ("qe", "qa"), n)
        attributed = np.minimum(scores[:, 2], scores[:, 1])  # `organic`, for all of them
        return ids, scores[:, 0] - attributed, scores[:, 1] - attributed

    @guarded
    def position_counts(self) -> tuple[dict[int, float], dict[int, float]]:
        """Labelled impressions and their rewards per slate position (1-based), as learned."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._pkey("lpos", "global"))
        pipe.hgetall(self._pkey(self.SLATE_SIZES, "global"))
        by_position, by_size = pipe.execute()
        fields = {f"s{text(size)}": float(value) for size, value in by_size.items()}
        rewards = {}
        for field, value in by_position.items():
            name = text(field)
            if name[0] == "r":
                rewards[int(name[1:])] = float(value)
            else:
                fields[name] = float(value)
        return position_impressions(fields), rewards

    def _attribute(self, pipe, side: str, user_id: str, item_id: str, ttl_s: float) -> None:
        """Queue the attribution of one engagement seen from `side` ("feedback" or "event"):
        counted as the service's when the other side's mark for (user, item) is there."""
        other = "event" if side == "feedback" else "feedback"
        marks = [self.key("attr", "{global}", s, user_id, item_id) for s in (other, side)]
        in_pipeline(self._attribute_script, pipe, [*marks, self._pkey("qa", "global")],
                    [item_id, max(1, int(ttl_s))])

    @guarded
    def count_engaged(self, item_id: str, position: int, user_id: str | None = None,
                      attribution_ttl_s: float = 3600.0) -> None:
        """A shown item was engaged with (its first positive reward in that decision); with the
        decision's `user_id`, the same click arriving as an event within `attribution_ttl_s`
        is attributed to the service (not counted again in the item's quality)."""
        pipe = self.client.pipeline(transaction=False)
        self.queue_engaged(pipe, item_id, position, user_id, attribution_ttl_s)
        pipe.execute()

    def queue_engaged(self, pipe, item_id: str, position: int, user_id: str | None, attribution_ttl_s: float) -> None:
        """Queue `count_engaged` on `pipe`."""
        pipe.zincrby(self._pkey("lr", "global"), 1.0, item_id)
        pipe.hincrbyfloat(self._pkey("lpos", "global"), f"r{position}", 1.0)
        pipe.hincrbyfloat(self._pkey("ltot", "global"), "rewards", 1.0)
        if user_id is not None:
            self._attribute(pipe, "feedback", user_id, item_id, attribution_ttl_s)
        self._touch(pipe, [item_id])

    def live_counts(self, n: int) -> list[tuple[str, float, float]]:
        """(item_id, exposure, rewards) of the n items with most position-weighted labelled
        impressions (`count_shown`, `count_engaged`)."""
        ids, exposure, rewards = self.live_columns(n)
        return list(zip(ids, exposure.tolist(), rewards.tolist()))

    def live_columns(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """`live_counts` as the ids and two arrays, ranked as Redis ranks a sorted set (ties: the
        greater id first). The exposure is a hash, which Redis does not rank: this reads all of
        it (in chunks), as loading a process's copy of the counts does, keeping only the best
        ~2n on the way (a worker's first seconds, before its copy is loaded, read 420k ids at the
        bench's 1M items: held whole, ~50 MB of heap that stayed); a process that keeps a copy
        ranks the copy instead (`serving.itemcounts`)."""
        if n <= 0:
            return [], np.zeros(0), np.zeros(0)
        found: dict[str, float] = {}  # (a scan may return an id twice: the later value counts)
        for chunk_ids, values in self.scan_counts(self.EXPOSURE):
            found.update(zip(chunk_ids, values.tolist()))
            if len(found) > 2 * n:  # exact since exposure only grows: an id cut here never comes back lower
                found = dict(_ranked(found, n))
        if not found:
            return [], np.zeros(0), np.zeros(0)
        ids, exposure = map(list, zip(*_ranked(found, n)))
        return ids, np.asarray(exposure, dtype=np.float64), self._scores_of("lr", ids)

    @guarded_fast
    def _scores_of(self, kind: str, ids: list[str]) -> np.ndarray:
        """Each id's score in one of the global sorted sets (0 where it has none)."""
        out = []
        for start in range(0, len(ids), TOP_CHUNK):
            out += self.fast.zmscore(self._pkey(kind, "global"), ids[start:start + TOP_CHUNK])
        return np.array([float(v or 0.0) for v in out], dtype=np.float64)

    @guarded_fast
    def top_popular(self, n: int, scope: str = "global") -> list[tuple[str, float]]:
        ids, scores = self._top_columns("pop", (), n, scope)
        return list(zip(ids, scores[:, 0].tolist()))

    @guarded_fast
    def popularity_columns(self, n: int, scope: str = "global", pause_s: float = 0.0) -> tuple[list[str], np.ndarray]:
        """`top_popular` as the ids and an array of their scores (`_top_columns`' `pause_s`)."""
        ids, scores = self._top_columns("pop", (), n, scope, pause_s)
        return ids, scores[:, 0]

    @guarded
    def bump_trending(self, scopes: list[str], item_id: str, weight: float, ts: float, half_life_s: float,
                      keep: int, unschedule_user: str | None = None, long_term: tuple[str, ...] = (),
                      engaged: bool | None = None, attribute: tuple[str, float] | None = None,
                      once: Once | None = None) -> None:
        """Count one weighted event at time `ts` in each trending scope and in the `long_term`
        popularity scopes, and in the item's quality counts unless `engaged` is None (and, in
        the same round trip, take an active user off the pre-generated slates' refresh
        schedule). An engagement with `attribute` = (user_id, ttl_s) is matched with the
        service's rewards (`count_engaged`)."""
        pipe = self.client.pipeline(transaction=False)
        self.queue_trending(pipe, scopes, item_id, weight, ts, half_life_s, keep, unschedule_user, long_term,
                            engaged, attribute, once)
        pipe.execute()

    def queue_trending(self, pipe, scopes: list[str], item_id: str, weight: float, ts: float, half_life_s: float,
                       keep: int, unschedule_user: str | None = None, long_term: tuple[str, ...] = (),
                       engaged: bool | None = None, attribute: tuple[str, float] | None = None,
                       once: Once | None = None) -> None:
        """Queue `bump_trending` on `pipe`."""
        if weight > 0:
            x = math.log(weight) + ts * math.log(2.0) / half_life_s
            for scope in scopes:
                in_pipeline(self._bump, pipe, [self._pkey("trend", scope)], [item_id, repr(x), keep])
            for scope in long_term:
                pipe.zincrby(self._pkey("pop", scope), weight, item_id)
        if engaged is not None:
            pipe.zincrby(self._pkey("qn", "global"), 1, item_id)
            if engaged:
                pipe.zincrby(self._pkey("qe", "global"), 1, item_id)
                if attribute is not None:
                    self._attribute(pipe, "event", attribute[0], item_id, attribute[1])
            self._touch(pipe, [item_id])
        if unschedule_user is not None:
            pipe.zrem(self.key("pregen-due"), unschedule_user)
        mark(pipe, once, "counts")

    @guarded_fast
    def top_trending(self, n: int, scope: str = "global") -> list[str]:
        return [text(m) for m in self.fast.zrevrange(self._pkey("trend", scope), 0, n - 1)]


def _ranked(values: dict[str, float], n: int) -> list[tuple[str, float]]:
    """The n (id, value) pairs a sorted set would rank first: highest value, ties the greater id."""
    ids = list(values)
    scores = np.fromiter(values.values(), dtype=np.float64, count=len(ids))
    if len(ids) > n:  # only the ranks that can make the cut are sorted
        keep = np.flatnonzero(scores >= np.partition(scores, len(ids) - n)[len(ids) - n])
        ids, scores = [ids[i] for i in keep.tolist()], scores[keep]
    order = np.lexsort((np.array(ids, dtype=str), scores))[::-1][:n]
    return [(ids[i], float(scores[i])) for i in order.tolist()]
