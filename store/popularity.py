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
import uuid
from typing import NamedTuple

import numpy as np

from banditrec import fastjson
from store.base import guarded, guarded_fast, in_pipeline, text
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


# The items' live exposure is a hash ("lx"): every slate adds to ~50 of its fields (HINCRBYFLOAT ~2 us, where
# ZINCRBY into a sorted set of every item shown took 8-13 us at 1M items). Releases before 5 December 2026
# (evening) kept it in a sorted set ("le"); what they counted stays there, never written again by this
# release, and is read beside the hash while it exists. Reads of both, summed per item (as a string of
# full precision: a Lua number returned to Redis would be cut to an integer).
_EXPOSURE = """
local function exposure(hash, legacy, ids)
  local out = redis.call('HMGET', hash, unpack(ids))
  if redis.call('EXISTS', legacy) == 1 then
    local old = redis.call('ZMSCORE', legacy, unpack(ids))
    for i = 1, #ids do
      if old[i] then out[i] = string.format('%.17g', (tonumber(out[i]) or 0) + tonumber(old[i])) end
    end
  end
  return out
end
"""


class ItemChanges(NamedTuple):
    epoch: str
    seq: int
    trimmed: int
    items: list[str]
    totals: tuple[float, float] | None
    counts: tuple[list, list, list, list] | None  # as item_counts: events, engaged, exposure, rewards
    shown: list[tuple[int, list[str], list[float]]] = []  # (seq, item ids, exposure added) per entry
    complete: bool = True  # False: more changed than the limits let through


_CHANGES = _EXPOSURE + """
redis.call('SET', KEYS[1], ARGV[3], 'NX')
local out = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[4]) or '0'}
local items, shown = {}, {}
if tonumber(ARGV[2]) > 0 then
  items = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
  shown = redis.call('ZRANGEBYSCORE', KEYS[11], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[5])
end
out[4] = items
out[5] = redis.call('HMGET', KEYS[5], 'exposure', 'rewards')
out[6] = shown
if #items > 0 and #items <= tonumber(ARGV[4]) then
  for k = 6, 10 do
    if k == 9 then out[k + 1] = exposure(KEYS[k], KEYS[12], items)
    else out[k + 1] = redis.call('ZMSCORE', KEYS[k], unpack(items)) end
  end
end
return out
"""  # KEYS: epoch, sequence, change list, trimmed-up-to, live totals, the five counts (the exposure a hash), the
# exposure log, the exposure a release before kept (`_EXPOSURE`);
# ARGV: since, limit, a new epoch token (used when there is none), most items whose counts come along,
# most exposure log entries

_COUNTS = _EXPOSURE + """
local out = {redis.call('GET', KEYS[1]) or '0', redis.call('HMGET', KEYS[2], 'exposure', 'rewards')}
if #ARGV > 0 then
  for k = 3, 7 do
    local column = {}
    for s = 1, #ARGV, 1000 do
      local ids = {unpack(ARGV, s, math.min(s + 999, #ARGV))}
      local part = k == 6 and exposure(KEYS[k], KEYS[8], ids) or redis.call('ZMSCORE', KEYS[k], unpack(ids))
      for _, v in ipairs(part) do column[#column + 1] = v end
    end
    out[k] = column
  end
end
return out
"""  # KEYS: sequence, live totals, the five counts (the exposure, KEYS[6], a hash), the exposure a release before
# kept; ARGV: item ids. The counts as of a sequence number.

CHANGES_KEPT = 100_000  # items in the change list; a reader further behind re-reads everything

# Every change of an item's counts but its exposure (qn qe qa lr) is followed, in the same
# pipeline, by a "touch": the item enters the change list with the next sequence number, so
# processes that keep the counts can re-read just what changed (`item_changes`).
_TOUCH = """
local seq = redis.call('INCR', KEYS[1])
local args = {}
for i = 1, #ARGV do
  args[#args + 1] = seq; args[#args + 1] = ARGV[i]
  if #args >= 1000 then redis.call('ZADD', KEYS[2], unpack(args)); args = {} end
end
if #args > 0 then redis.call('ZADD', KEYS[2], unpack(args)) end
local over = redis.call('ZCARD', KEYS[2]) - KEPT
if over > 1000 then
  local last = redis.call('ZRANGE', KEYS[2], over - 1, over - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  if tonumber(last[2]) > tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('SET', KEYS[3], last[2]) end
end
return seq
""".replace("KEPT", str(CHANGES_KEPT))
# KEYS: sequence, change list, trimmed-up-to; ARGV: item ids

SHOWN_KEPT = 200_000  # item entries in the exposure log; a reader further behind re-reads everything

# Exposure does not enter the change list: every slate would put ~50 items on it, and every
# process would re-read their five counts on its next request. It goes to the exposure log
# instead, one entry per call with the sequence number, the items and the exposure added,
# so that a process keeping the counts adds it to the rows it knows (`serving.itemcounts`).
_SHOWN = """
local p = tonumber(ARGV[2])
for i = 3, 2 + 2 * p, 2 do
  redis.call('HINCRBYFLOAT', KEYS[4], 'n' .. ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBYFLOAT', KEYS[5], 'exposure', ARGV[1])
local payload = ARGV[3 + 2 * p]
local shown = cjson.decode(payload)
local ids, weights = shown[1], shown[2]
if #ids == 0 then return 0 end
for i = 1, #ids do
  redis.call('HINCRBYFLOAT', KEYS[3], ids[i], weights[i])
end
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[6], seq, seq .. ' ' .. #ids .. ' ' .. payload)
local kept = redis.call('INCRBY', KEYS[7], #ids)
if kept > KEPT then
  local last = '0'
  while kept > KEPT do
    local oldest = redis.call('ZPOPMIN', KEYS[6])
    if #oldest == 0 then redis.call('SET', KEYS[7], 0); break end
    kept = redis.call('DECRBY', KEYS[7], tonumber(string.match(oldest[1], '^%d+ (%d+) ')))
    last = oldest[2]
  end
  if tonumber(last) > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], last) end
end
return seq
""".replace("KEPT", str(SHOWN_KEPT))
# KEYS: sequence, trimmed-up-to, live exposure (a hash, `_EXPOSURE`), position counts, live totals, the exposure
# log, its item count; ARGV: total exposure, the number of positions p, p (position, impressions) pairs, then
# the JSON [[item_id, ...], [weight, ...]]


# KEYS[1]: a global sorted set of per-item counts, KEYS[2..]: other such sets; ARGV: start, stop
# (ranks, highest score first). Returns the ranked slice's members, then their scores, then each
# other set's score of them ('0' where it has none), as strings (Lua numbers would be truncated).
_TOP_WITH = """
local top = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
local out = {}
for i = 1, #top, 2 do out[#out + 1] = top[i] end
for i = 2, #top, 2 do out[#out + 1] = top[i] end
for k = 2, #KEYS do
  for i = 1, #top, 2 do out[#out + 1] = redis.call('ZSCORE', KEYS[k], top[i]) or '0' end
end
return out
"""
TOP_CHUNK = 1_000  # items per command of a long top list: Redis serves others between chunks (20,000 at once: ~20 ms)


class PopularityOps:
    def _pkey(self, kind: str, scope: str) -> str:
        return self.key(kind, "{" + scope + "}")

    def _change_keys(self) -> list[str]:
        return [self._pkey(k, "global") for k in ("qseq", "qchanged", "qtrimmed")]

    def _touch(self, pipe, item_ids: list[str]) -> None:
        """Queue, after the changes of these items' counts, their entry in the change list."""
        in_pipeline(self._touch_script, pipe, self._change_keys(), list(item_ids))

    @guarded_fast
    def item_changes(self, since: int, limit: int = 50_000, counts_up_to: int = 1000,
                     shown_limit: int = 20_000) -> "ItemChanges":
        """What a process that keeps item counts needs to stay exact, in one round trip (one
        Lua call): the counts' epoch (a new one after a build replaced them, or after Redis
        lost them), the last sequence number, up to which changes were trimmed from the lists,
        the items changed after `since` (at most `limit`) but for their exposure, the live
        totals (`item_counts`), when at most `counts_up_to` items changed their counts as
        `item_counts` gives them (else None), and the exposure added after `since` (at most
        `shown_limit` entries of the exposure log). `complete` is False when a limit cut the
        items or the entries short."""
        keys = [self._pkey("qepoch", "global"), *self._change_keys(), self._pkey("ltot", "global"),
                *(self._pkey(kind, "global") for kind in self.COUNT_KINDS), self._pkey("qshown", "global"),
                self._pkey(self.LEGACY_EXPOSURE, "global")]
        token, last, trimmed_to, items, totals, shown, *columns = self._changes(
            keys=keys, args=[int(since), int(limit), uuid.uuid4().hex, int(counts_up_to), int(shown_limit)],
            client=self.fast)
        totals = (float(totals[0]), float(totals[1])) if None not in totals else None
        items = [text(i) for i in items]
        counts = _counted(*columns) if len(columns) == len(self.COUNT_KINDS) else None
        complete = not (limit and len(items) >= limit) and not (shown_limit and len(shown) >= shown_limit)
        return ItemChanges(text(token), int(last or 0), int(float(trimmed_to or 0)), items, totals, counts,
                           _exposure_log(shown), complete)

    @guarded_fast
    def counts_as_of(self, ids: list[str]) -> tuple[list, list, list, list, int]:
        """`item_counts` without the totals, and the sequence number they are as of (every change
        up to it is in them, none after it), in one round trip."""
        *columns, _, seq = self._counts(ids)
        return (*columns, seq)

    def _counts(self, ids: list[str]) -> tuple[list, list, list, list, tuple[float, float] | None, int]:
        """`item_counts` and the sequence number, in one Lua call (atomic)."""
        keys = [self._change_keys()[0], self._pkey("ltot", "global"),
                *(self._pkey(kind, "global") for kind in self.COUNT_KINDS), self._pkey(self.LEGACY_EXPOSURE, "global")]
        seq, totals, *columns = self._counts_script(keys=keys, args=list(ids), client=self.fast)
        totals = (float(totals[0]), float(totals[1])) if None not in totals else None
        return (*_counted(*(columns or ([], [], [], [], []))), totals, int(seq))

    CHANGES_KEPT = CHANGES_KEPT
    SHOWN_KEPT = SHOWN_KEPT
    COUNT_KINDS = ("qn", "qe", "qa", "lx", "lr")  # events, engaged, attributed, live exposure, live engagements
    EXPOSURE = "lx"  # kept in a hash (`_EXPOSURE`), the other counts in sorted sets
    LEGACY_EXPOSURE = "le"  # what releases before 5 December 2026 (evening) counted, in a sorted set: read, not written

    def scan_counts(self, kind: str, chunk: int = 2_000):
        """Every (item_ids, counts) of one of `COUNT_KINDS`, in chunks (ZSCAN, HSCAN: a member
        present throughout is returned at least once; one changed meanwhile is on the change
        list, or in the exposure log). The exposure of items a release before counted comes
        last, summed with what this one counted: a later chunk's value for an id replaces an
        earlier one's."""
        if kind not in self.COUNT_KINDS:
            raise ValueError(f"unknown count kind {kind!r}")
        yield from self._scan(self._pkey(kind, "global"), chunk, hashed=kind == self.EXPOSURE)
        if kind == self.EXPOSURE:
            for item_ids, old in self._scan(self._pkey(self.LEGACY_EXPOSURE, "global"), chunk):
                yield item_ids, old + self._exposure_of(item_ids)

    def _scan(self, key: str, chunk: int, hashed: bool = False):
        cursor = 0
        while True:
            cursor, pairs = self._scan_chunk(key, cursor, chunk, hashed)
            if pairs:
                yield [text(m) for m, _ in pairs], np.fromiter((float(s) for _, s in pairs), dtype=np.float64,
                                                               count=len(pairs))
            if cursor == 0:
                return

    @guarded
    def _scan_chunk(self, key: str, cursor: int, count: int, hashed: bool = False):
        if hashed:
            cursor, found = self.client.hscan(key, cursor, count=count)
            return cursor, list(found.items())
        return self.client.zscan(key, cursor, count=count)

    @guarded
    def _exposure_of(self, ids: list[str]) -> np.ndarray:
        """What this release counted as each item's exposure (0 where nothing)."""
        return np.array([float(v or 0.0) for v in self.client.hmget(self._pkey(self.EXPOSURE, "global"), ids)],
                        dtype=np.float64)

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
                     scope: str = "global") -> tuple[list[str], np.ndarray]:
        """The ids of the n items with the highest scores in `ranked`, and (n, 1 + len(others))
        of their scores there and in `others`, read `TOP_CHUNK` ranks per command (one Lua call
        each), so that a read of 20,000 items never holds Redis for long. An item that moves
        across a chunk boundary meanwhile is kept once (it may then be missed instead)."""
        keys = [self._pkey(ranked, scope), *(self._pkey(kind, "global") for kind in others)]
        ids: list[str] = []
        parts = []
        for start in range(0, n, TOP_CHUNK):
            stop = min(n, start + TOP_CHUNK) - 1
            flat = self._top_with_script(keys=keys, args=[start, stop], client=self.fast)
            m = len(flat) // (len(keys) + 1)  # ids, then a column of scores per key
            ids += [text(x) for x in flat[:m]]
            parts.append(np.array(flat[m:], dtype=bytes).astype(np.float64).reshape(len(keys), m).T)
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
        impressions, rewards = {}, {}
        for field, value in self.client.hgetall(self._pkey("lpos", "global")).items():
            name = text(field)
            (impressions if name[0] == "n" else rewards)[int(name[1:])] = float(value)
        return impressions, rewards

    def queue_shown(self, pipe, shown: list[tuple[str, int, float]]) -> None:
        """Queue on `pipe` what the service showed, per slate item (item_id, position, exposure
        weight): the item's exposure and the position's impressions (`count_engaged` counts
        what was engaged with), in one command (a slate of 50 was 101 commands)."""
        weights, positions = {}, {}
        for item_id, position, weight in shown:
            weights[item_id] = weights.get(item_id, 0.0) + float(weight)
            positions[int(position)] = positions.get(int(position), 0) + 1
        self.queue_exposure(pipe, weights, positions)

    def queue_exposure(self, pipe, weights: dict[str, float], positions: dict[int, float]) -> None:
        """Queue summed exposure: weight per item, impressions per position (one script, which
        also appends the items and their weights to the exposure log)."""
        if not weights and not positions:
            return
        args = [repr(float(sum(weights.values()))), len(positions)]
        for position, n in positions.items():
            args += [int(position), repr(float(n))]
        args.append(fastjson.dumps([list(weights), [float(w) for w in weights.values()]]))
        seq, _, trimmed = self._change_keys()
        keys = [seq, trimmed, *(self._pkey(k, "global") for k in (self.EXPOSURE, "lpos", "ltot", "qshown", "qshownn"))]
        in_pipeline(self._shown, pipe, keys, args)

    @guarded
    def count_shown(self, shown: list[tuple[str, int, float]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        self.queue_shown(pipe, shown)
        pipe.execute()

    @guarded
    def count_exposure(self, weights: dict[str, float], positions: dict[int, float]) -> None:
        """Summed exposure (`serving.exposure.ExposureBuffer`'s flush)."""
        pipe = self.client.pipeline(transaction=False)
        self.queue_exposure(pipe, weights, positions)
        pipe.execute()

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
        pipe.zincrby(self._pkey("lr", "global"), 1.0, item_id)
        pipe.hincrbyfloat(self._pkey("lpos", "global"), f"r{position}", 1.0)
        pipe.hincrbyfloat(self._pkey("ltot", "global"), "rewards", 1.0)
        if user_id is not None:
            self._attribute(pipe, "feedback", user_id, item_id, attribution_ttl_s)
        self._touch(pipe, [item_id])
        pipe.execute()

    @guarded_fast
    def item_counts(self, ids: list[str]) -> tuple[list, list, list, list, tuple[float, float] | None]:
        """Per item: events and engaged events (those attributed to the service's slates left
        out), live exposure and live engagements (None where there are none); and the totals of
        live exposure and engagements over all items (None before the first), in one round trip."""
        *counts, _ = self._counts(ids)
        return tuple(counts)

    def live_counts(self, n: int) -> list[tuple[str, float, float]]:
        """(item_id, exposure, rewards) of the n items with most position-weighted labelled
        impressions (`count_shown`, `count_engaged`)."""
        ids, exposure, rewards = self.live_columns(n)
        return list(zip(ids, exposure.tolist(), rewards.tolist()))

    def live_columns(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """`live_counts` as the ids and two arrays, ranked as Redis ranks a sorted set (ties: the
        greater id first). The exposure is a hash, which Redis does not rank: this reads all of
        it (in chunks), as loading a process's copy of the counts does; a process that keeps
        one ranks the copy instead (`serving.itemcounts`)."""
        found: dict[str, float] = {}  # (a scan may return an id twice)
        for chunk_ids, values in self.scan_counts(self.EXPOSURE):
            found.update(zip(chunk_ids, values.tolist()))
        if n <= 0 or not found:
            return [], np.zeros(0), np.zeros(0)
        ids, exposure = list(found), np.fromiter(found.values(), dtype=np.float64, count=len(found))
        if len(ids) > n:  # only the ranks that can make the cut are sorted
            keep = np.flatnonzero(exposure >= np.partition(exposure, len(ids) - n)[len(ids) - n])
            ids, exposure = [ids[i] for i in keep.tolist()], exposure[keep]
        order = np.lexsort((np.array(ids, dtype=str), exposure))[::-1][:n]
        ids = [ids[i] for i in order.tolist()]
        return ids, exposure[order], self._scores_of("lr", ids)

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
        pipe.execute()

    @guarded_fast
    def top_trending(self, n: int, scope: str = "global") -> list[str]:
        return [text(m) for m in self.fast.zrevrange(self._pkey("trend", scope), 0, n - 1)]


def _counted(events, engaged, attributed, exposure, rewards) -> tuple[list, list, list, list]:
    """Per item (event, engaged, exposure, rewards) as floats (None where a set has none), the
    engagements attributed to the service's slates left out (`organic`)."""
    events, engaged, attributed, exposure, rewards = ([None if v is None else float(v) for v in column]
                                                      for column in (events, engaged, attributed, exposure, rewards))
    if any(attributed):
        counted = [organic(n or 0.0, e or 0.0, a or 0.0) for n, e, a in zip(events, engaged, attributed)]
        events, engaged = [n for n, _ in counted], [e for _, e in counted]
    return events, engaged, exposure, rewards


def organic(events: float, engaged: float, attributed: float) -> tuple[float, float]:
    """An item's (events, engaged events) without the engagements attributed to the service
    (never below 0 engagements: a build may have read fewer than were attributed since).

    >>> organic(10.0, 4.0, 3.0), organic(2.0, 1.0, 5.0)
    ((7.0, 1.0), (1.0, 0.0))
    """
    attributed = min(attributed, engaged)
    return events - attributed, engaged - attributed


def _exposure_log(entries) -> list[tuple[int, list[str], list[float]]]:
    """(seq, item ids, weights) of exposure log entries ("<seq> <n> <JSON [[ids], [weights]]>")."""
    if not entries:
        return []
    seqs, payloads = [], []
    for entry in entries:
        seq, _, rest = entry.partition(b" ")
        seqs.append(int(seq))
        payloads.append(rest.partition(b" ")[2])
    parsed = fastjson.loads(b"[" + b",".join(payloads) + b"]")
    return [(seq, ids, weights) for seq, (ids, weights) in zip(seqs, parsed)]
