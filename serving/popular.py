"""Popularity lists, and the popularity and quality features. Lists and catalog-wide numbers
are kept in-process for a while: cheap for cold-start requests, and still there (stale) when
Redis is not. The candidates' quality is read fresh on every request: a quality a few seconds
old shows everyone the same items until it is re-read (on real ratings, a quality re-read every
360 slates instead of every slate cost 0.07 clicks per slate, `benchmarks.quality_replay`)."""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bandit.features import live_factor, live_quality, position_weights
from serving.itemcounts import ItemCounts
from store import Store, StoreError

REFRESH_PAUSE_S = 0.002  # between the background refresh's reads of the popularity list's chunks


@dataclass(frozen=True, eq=False)
class ItemSignals:
    """What every request reads about items beyond their features: long-term popularity (0..1),
    quality (0..1, of the items with most events or exposure: the fallback while Redis is
    away), the catalog's engagement share (the quality of an item never met), the factor that
    puts live engagements on the events' scale, the exposure weight of each slate position and
    the item ids by quality, best first.

    The items with a quality are kept as `keys` (catalog rows, read from this process's copy of
    the counts, with `ids_of` to name them; or ids, read from Redis) and their `pooled` quality:
    naming 20,000 items and filling a dict of them took ~30 ms of every worker's CPU each
    refresh, for the few best (`top`) and a fallback that is read only while Redis is away."""

    popularity: dict[str, float] = field(default_factory=dict)
    share: float = 0.0
    factor: float = 0.0
    positions: dict[int, float] = field(default_factory=dict)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pooled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # best `pooled` first
    ids_of: Callable[[np.ndarray], list[str]] | None = None  # rows -> ids (None: the keys are ids)

    def top(self, n: int) -> list[str]:
        """The ids of the n items of highest quality."""
        return self._named(self.keys[self.order[:n]])

    @functools.cached_property
    def quality(self) -> dict[str, float]:
        """id -> quality, named on first use (while Redis is away)."""
        return dict(zip(self._named(self.keys), self.pooled.tolist()))

    @functools.cached_property
    def by_quality(self) -> list[str]:
        return self.top(len(self.keys))

    def _named(self, keys: np.ndarray) -> list[str]:
        return list(self.ids_of(keys)) if self.ids_of is not None else keys.tolist()


class PopularCache:
    def __init__(self, store: Store, ttl_s: float = 30.0, clock=time.monotonic, feature_top: int = 20_000,
                 live_weight: float = 0.5):
        self.store = store
        self.live_weight = live_weight  # `model.quality_live_weight`
        self.ttl_s = ttl_s
        self.clock = clock
        self.feature_top = feature_top
        self._lists: dict[tuple[str, str], tuple[float, list[str], int]] = {}  # read at, ids, asked
        self._values: tuple[float, ItemSignals] | None = None
        self._rows = None  # (signals, catalog, memo, `_by_row`'s answer) for the last ones asked
        self.counts = ItemCounts(store)
        self._lock = threading.Lock()
        self.background = False  # `refresh()` runs on a thread: requests read what it last read

    def _fresh(self, stamp: float) -> bool:
        """Whether a value read at `stamp` serves as it is. With a background refresh, a request
        re-reads inline only what that refresh has left stale for several periods (it failed)."""
        return self.clock() - stamp <= (4 * self.ttl_s if self.background else self.ttl_s)

    def refresh(self) -> None:
        """Re-read the catalog-wide numbers and every list read so far (the service's background
        task, every `ttl_s`: a re-read of 20,000 items' counts costs tens of ms at 1M items, too
        much for the request that happens to find it stale). The quality side comes from this
        process's copy of the counts once it is loaded (`ItemCounts.tops`), the popularity list
        from Redis in chunks (`store.popularity.TOP_CHUNK`): at 1M items, read whole from Redis by every
        worker at once, it held Redis and the GIL long enough to put ~150 ms on the requests
        meanwhile. It reads the list with a pause between chunks and maps it to catalog rows
        (`_by_row`) before requests see it: done in one go, on a worker busy at 100 requests/s,
        the ~80 ms of CPU it took put 50-120 ms on the requests of that quarter second."""
        self._signals(force=True, pause_s=REFRESH_PAUSE_S)
        for (kind, scope), (_, ids, asked) in list(self._lists.items()):
            self._read_list(kind, scope, asked, stale=ids)

    def feature(self, ids: list[str] | None, rows: np.ndarray | None = None, catalog=None) -> np.ndarray:
        """Each item's long-term popularity now, 0..1: log(1 + score) relative to the most
        popular item's, from the top `feature_top` of the global ranking (0 below it). With the
        items' catalog `rows` (`ids` may then be None), by row (`_by_row`: a bit per row marks
        the top items', whose values a binary search finds) where naming ~1000 items and
        looking them up in a dict of 20,000 took ~0.4 ms a request at 1M items; rows added
        since that was made, by id."""
        signals = self._signals()
        if rows is None or catalog is None:
            return np.fromiter(map(signals.popularity.get, ids, itertools.repeat(0.0)), dtype=np.float64,
                               count=len(ids))
        rows = np.asarray(rows, dtype=np.int64)
        keys, values, bits = self._by_row(signals, catalog)
        mapped = 8 * len(bits)
        out = np.zeros(len(rows))
        early = rows < mapped
        maybe = np.flatnonzero(early)
        maybe = maybe[(bits[rows[maybe] >> 3] >> (rows[maybe] & 7).astype(np.uint8)) & 1 == 1]  # a top item's row
        if len(maybe):  # (searched for all ~1000 rows, ~0.1 ms)
            at = np.searchsorted(keys, rows[maybe])
            out[maybe] = values[at]
        late = np.flatnonzero(~early)
        if len(late):
            out[late] = [signals.popularity.get(i, 0.0) for i in catalog.ids.take(rows[late])]
        return out

    def _by_row(self, signals: ItemSignals, catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`signals.popularity` by `catalog` row: the rows of its items, sorted, their values, and
        a bit per row of the catalog then (set: a row of the list; 125 KB at 1M items), rows
        after those unmapped. Exact for the mapped rows: a row's id never changes, and a row
        an item leaves (replaced or deleted) is never shown again. Made once per signals and
        catalog, from the built rows remembered the time before (a catalog's first one looks
        up 20,000 ids: ~40 ms)."""
        made = self._rows
        if made is not None and made[0] is signals and made[1]() is catalog:
            return made[3]
        memo = made[2] if made is not None and made[1]() is catalog else {}
        ids = list(signals.popularity)
        n = len(catalog.ids)  # before the look-up: a row added meanwhile is looked up by id
        found = catalog.row_of.get_many(ids, memo=memo)
        if len(memo) > 2 * len(ids):  # (ids that left the list: dropped now and then, not every time)
            memo = {i: memo[i] for i in ids if i in memo}
        values = np.fromiter(signals.popularity.values(), dtype=np.float64, count=len(ids))
        ok = np.flatnonzero(found >= 0)
        order = ok[np.argsort(found[ok], kind="stable")]
        bits = np.zeros(n // 8, dtype=np.uint8)  # whole bytes: the last n % 8 rows go by id too
        keys = found[order]
        below = keys[keys < 8 * len(bits)]
        np.bitwise_or.at(bits, below >> 3, (1 << (below & 7)).astype(np.uint8))
        mapped = (keys, values[order], bits)
        self._rows = (signals, weakref.ref(catalog), memo, mapped)
        return mapped

    def quality(self, ids: list[str] | None, rows: np.ndarray | None = None, catalog=None) -> np.ndarray:
        """Each item's quality now (`bandit.features.quality`: the share of its events that
        were engagements, shrunk towards the catalog's share; pooled with its engagements per
        position-weighted impression where the service showed it, `bandit.features.live_quality`),
        from its counts as they are now, and the live scale (`live_factor`) from the live totals
        now (one round trip: a scale re-read every 30 s left the live counts out for the first
        30 s and lagged after; in-process on MovieLens that cost ~0.02 clicks per slate);
        while Redis is away, as last re-read (items outside the `feature_top` then get the
        catalog's share). With the items' catalog `rows`, the counts come from this process's
        copy, exact to the last request (`serving.itemcounts`), and `ids` may be None."""
        signals = self._signals()
        try:
            if rows is not None and catalog is not None:
                counts, totals = self.counts.read(catalog, rows, ids)
                events, engaged, exposure, engagements = counts.T
            else:
                *counts, totals = self.store.item_counts(list(ids))
                events, engaged, exposure, engagements = (np.array([float(v or 0.0) for v in column], dtype=np.float64)
                                                          for column in counts)
        except StoreError:
            ids = catalog.ids.take(rows) if ids is None else ids
            return np.fromiter((signals.quality.get(i, signals.share) for i in ids), dtype=np.float64, count=len(ids))
        factor = live_factor(totals[1], totals[0], signals.share) if totals is not None else signals.factor
        return live_quality(engaged, events, engagements, exposure, signals.share, self.live_weight, factor=factor)

    def position_weights(self) -> dict[int, float]:
        """How much an impression at each slate position is worth (`bandit.features.position_weights`),
        as last re-read; positions not yet seen count 1."""
        return self._signals().positions

    def best(self, n: int) -> list[str]:
        """The n items of highest quality (a candidate source: what those who meet it like)."""
        return self._signals().top(n)

    def _signals(self, force: bool = False, pause_s: float = 0.0) -> ItemSignals:
        """Popularity, quality, the catalog's engagement share and the items by quality, re-read
        every `ttl_s` or when `force`d (and kept, stale, while Redis is away); when forced,
        mapped to the rows of the catalog asked last (`_by_row`) before they are kept."""
        cached = self._values
        if not force and cached is not None and self._fresh(cached[0]):
            return cached[1]
        try:
            ids, scores = self.store.popularity_columns(self.feature_top, pause_s=pause_s)
            scale = math.log1p(scores[0]) if len(scores) and scores[0] > 0 else 1.0
            relative = np.log1p(np.maximum(scores, 0.0)) / scale
            popularity = dict(zip(ids, relative.tolist()))
            tops = self.counts.tops(self.feature_top, live=self.live_weight > 0)  # this process's copy, once loaded
            if tops is None:  # by id, from Redis
                own, n_events, engaged = self.store.quality_columns(self.feature_top)
                shown, exposed, rewarded = self.store.live_columns(self.feature_top) if self.live_weight > 0 else \
                    ([], np.zeros(0), np.zeros(0))
                own, shown, ids_of = _ids(own), _ids(shown), None
            else:  # by catalog row
                own, n_events, engaged, shown, exposed, rewarded, ids_of = tops
            events = n_events.sum()
            share = float(engaged.sum() / events) if events > 0 else 0.0
            keys, where = _aligned(own, shown)  # the items shown without events start from the share
            n_events, engaged = (np.concatenate([column, np.zeros(len(keys) - len(own))])
                                 for column in (n_events, engaged))
            exposure, rewards = np.zeros(len(keys)), np.zeros(len(keys))
            exposure[where], rewards[where] = exposed, rewarded
            factor = live_factor(rewards, exposure, share)
            pooled = live_quality(engaged, n_events, rewards, exposure, share, self.live_weight, factor)
            values = ItemSignals(popularity, share, factor, position_weights(*self.store.position_counts()),
                                 keys, pooled, np.argsort(-pooled, kind="stable"), ids_of)  # (ties: in key order)
        except StoreError:
            values = cached[1] if cached else ItemSignals()
        made = self._rows
        catalog = made[1]() if force and made is not None else None
        if catalog is not None:
            self._by_row(values, catalog)  # here, not on the first request to meet them
        self._values = (self.clock(), values)
        return values

    def ids(self, kind: str, scope: str, n: int) -> list[str]:
        """Up to n item ids of a popularity list ("pop" long-term, "trend" decayed)."""
        cached = self._lists.get((kind, scope))
        if cached is not None and self._fresh(cached[0]) and cached[2] >= n:  # read for at least n
            return cached[1][:n]
        return self._read_list(kind, scope, n, stale=cached[1] if cached else [])[:n]

    def _read_list(self, kind: str, scope: str, n: int, stale: list[str]) -> list[str]:
        try:
            if kind == "pop":
                ids = [item_id for item_id, _ in self.store.top_popular(n, scope=scope)]
            else:
                ids = self.store.top_trending(n, scope=scope)
        except StoreError:
            ids = stale  # stale beats nothing while Redis is away; retried after a full ttl, not every request
        with self._lock:
            self._lists[(kind, scope)] = (self.clock(), ids, n)
        return ids

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
            self._values = None


def _ids(ids: list[str]) -> np.ndarray:
    out = np.empty(len(ids), dtype=object)
    out[:] = ids
    return out


def _aligned(own: np.ndarray, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`own` followed by the keys of `shown` it lacks, and where each of `shown` is in that
    (keys unique within each). Rows: one sort of `own` and a binary search; ids (an object
    array, read from Redis): a dict (`np.isin` compares object arrays pairwise, seconds for
    20,000 ids; fixed-width numpy strings cost 4 bytes per character of the longest id).

    >>> keys, where = _aligned(np.array([5, 2, 9]), np.array([9, 7, 5, 1]))
    >>> keys.tolist(), where.tolist()
    ([5, 2, 9, 7, 1], [2, 3, 0, 4])
    >>> keys, where = _aligned(np.array(["b", "a"], dtype=object), np.array(["c", "a"], dtype=object))
    >>> keys.tolist(), where.tolist()
    (['b', 'a', 'c'], [2, 1])
    """
    if own.dtype.kind in "iu" and shown.dtype.kind in "iu" and len(own):
        by_key = np.argsort(own, kind="stable")
        at = np.minimum(np.searchsorted(own, shown, sorter=by_key), len(own) - 1)
        where = np.where(own[by_key[at]] == shown, by_key[at], -1)
    else:
        index = {key: k for k, key in enumerate(own.tolist())}
        where = np.fromiter((index.get(key, -1) for key in shown.tolist()), dtype=np.int64, count=len(shown))
    extra = np.flatnonzero(where < 0)
    where[extra] = len(own) + np.arange(len(extra))
    return np.concatenate([own, shown[extra]]), where
