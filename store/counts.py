"""Item counts kept exact across processes: per item its events, engaged events and attributed
engagements (`store.popularity`), its live exposure and live engagements, all read as of one
sequence number; the change list that names the items whose counts changed, and the exposure
log of what each slate added (`serving.itemcounts` keeps a copy up to date with both).
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import numpy as np

from banditrec import fastjson
from store.base import guarded, guarded_fast, in_pipeline, text

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
local positions = cjson.decode(ARGV[2])
for i = 1, #positions[1] do
  local field = positions[1][i]
  if string.sub(field, 1, 1) == 's' then redis.call('HINCRBYFLOAT', KEYS[8], string.sub(field, 2), positions[2][i])
  else redis.call('HINCRBYFLOAT', KEYS[4], field, positions[2][i]) end
end
redis.call('HINCRBYFLOAT', KEYS[5], 'exposure', ARGV[1])
local payload = ARGV[3]
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
# log, its item count, impressions by slate size (`position_fields`: "s<k>" there as "<k>", "n<p>" in the position
# counts); ARGV: total exposure, the JSON [[position field, ...], [impressions, ...]] (`position_fields`),
# the JSON [[item_id, ...], [weight, ...]] (two arguments, not one per position: ~100 fewer to encode for a slate of 50)


class CountOps:
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
    SLATE_SIZES = "lsize"  # impressions at every position 1..k, by k (`position_fields`); apart from the position
    # counts ("lpos"), whose "n<p>" and "r<p>" fields a release before reads (it would take "s<k>" for rewards)
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
        fields = position_fields(positions)
        args = [repr(float(sum(weights.values()))), fastjson.dumps([list(fields), list(fields.values())]),
                fastjson.dumps([list(weights), [float(w) for w in weights.values()]])]
        seq, _, trimmed = self._change_keys()
        keys = [seq, trimmed, *(self._pkey(k, "global") for k in (self.EXPOSURE, "lpos", "ltot", "qshown", "qshownn",
                                                                   self.SLATE_SIZES))]
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

    @guarded_fast
    def item_counts(self, ids: list[str]) -> tuple[list, list, list, list, tuple[float, float] | None]:
        """Per item: events and engaged events (those attributed to the service's slates left
        out), live exposure and live engagements (None where there are none); and the totals of
        live exposure and engagements over all items (None before the first), in one round trip."""
        *counts, _ = self._counts(ids)
        return tuple(counts)

def position_fields(positions: dict[int, float]) -> dict[str, float]:
    """Impressions per slate position as fields of the position counts. A slate fills positions
    1..k, so "s<k>" counts impressions at each of the positions 1..k at once, and "n<p>" what
    is left at position p alone: a slate of 50 is one field, not 50 (each an increment in
    Redis, half of the exposure script's time), a batch of slates one field per slate size.
    `position_impressions` reads them back.

    >>> position_fields({1: 1, 2: 1, 3: 1})
    {'s3': 1.0}
    >>> position_fields({1: 5, 2: 5, 3: 2, 5: 1})
    {'s2': 3.0, 's3': 2.0, 'n5': 1.0}
    >>> position_fields({1: 1, 2: 3})
    {'s2': 1.0, 'n2': 2.0}
    """
    top = 0
    while top + 1 in positions:
        top += 1
    floor = [0.0] * (top + 2)  # floor[p]: the fewest impressions of positions 1..p (0 past the run)
    for p in range(1, top + 1):
        floor[p] = float(positions[p]) if p == 1 else min(floor[p - 1], float(positions[p]))
    fields = {f"s{k}": floor[k] - floor[k + 1] for k in range(1, top + 1) if floor[k] != floor[k + 1]}
    rest = {p: float(n) - (floor[p] if p <= top else 0.0) for p, n in sorted(positions.items())}
    return {**fields, **{f"n{p}": n for p, n in rest.items() if n != 0}}


def position_impressions(fields: dict[str, float]) -> dict[int, float]:
    """Impressions per position from the "s<k>" and "n<p>" fields (`position_fields`).

    >>> position_impressions({"s2": 3.0, "s3": 2.0, "n5": 1.0})
    {1: 5.0, 2: 5.0, 3: 2.0, 5: 1.0}
    """
    out: dict[int, float] = {}
    for name, value in fields.items():
        if name[0] == "n":
            out[int(name[1:])] = out.get(int(name[1:]), 0.0) + value
        elif name[0] == "s":
            for p in range(1, int(name[1:]) + 1):
                out[p] = out.get(p, 0.0) + value
    return dict(sorted(out.items()))


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
