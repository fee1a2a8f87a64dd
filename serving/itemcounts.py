"""The candidates' counts behind their quality, mirrored in this process and exact to the last
request, instead of five Redis lookups (four sorted sets, a hash) for each of ~1000 candidates
on every request (3-5 ms a request at 1000 candidates).

Two logs in Redis say what changed, under one sequence number (`store.item_changes`): the
change list names the items whose events, engagements or attributions changed, and the
exposure log holds the exposure each slate (or each batch of slates) added, item by item. A
request reads both since the one before (one round trip, with the live totals), takes in or
forgets the rows the change list names, and adds the logged exposure to the rows it knows.
Rows it does not know it reads from Redis (`store.counts_as_of`). A background load (`load`,
started by the first read) fills in every row from a scan of the counts, so that at steady
state a request reads only what changed since the last one.

Every row remembers the sequence number it is exact as of, and logged exposure is added only
to rows older than its entry: a row read after a slate was counted already holds it. Rows
are kept by catalog row: events, engaged events and live engagements in float32, live
exposure, which grows by small additions, in float64, and the sequence number (28 MB at 1M
items). A new
catalog (an index swap), a new counts epoch (a build replaced the counts, or Redis lost
them) or logs this process fell behind starts over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from serving.metrics import BACKGROUND_FAILURES, ITEM_COUNTS_LOADS
from store import Store, StoreError

log = logging.getLogger(__name__)


class ItemCounts:
    def __init__(self, store: Store, preload: bool = True):
        self.store = store
        self.preload = preload
        self._lock = threading.Lock()
        self._catalog = None
        self._epoch: str | None = None
        self._seq = 0
        self._values = np.zeros((0, 3), dtype=np.float32)  # events, engaged events, live engagements
        self._exposure = np.zeros(0, dtype=np.float64)      # live exposure
        self._known = np.zeros(0, dtype=bool)
        # The sequence number each known row is exact as of, less `_base` (the sequence at the last
        # reset): 4 bytes a row instead of 8. A reset comes before it could overflow (`_SPAN`).
        self._asof = np.zeros(0, dtype=np.uint32)
        self._base = 0
        self._loader: threading.Thread | None = None
        self._loaded = False  # a load has filled in every row of this catalog and epoch
        self._floors = (None, 0.0, 0.0)  # the catalog, and the n-th count of each kind `tops` last found
        self.reread = 0  # items read one by one from Redis (for tests and benchmarks)
        self.loads = 0   # completed background loads
        self.failures = 0  # background loads that failed (logged)
        self.discarded = 0  # background loads not merged: the catalog, the epoch or the change list moved on

    def read(self, catalog, rows: np.ndarray,
             ids: list[str] | None = None) -> tuple[np.ndarray, tuple[float, float] | None]:
        """(len(rows), 4) counts (events, engaged events, live exposure, live engagements) of
        the catalog's `rows` (whose ids are `ids`, else named where needed) as they are now, and
        the live totals.
        Raises StoreError while Redis is away."""
        rows = np.asarray(rows, dtype=np.int64)
        with self._lock:
            changes = self.store.item_changes(self._seq)
            epoch, seq, totals = changes.epoch, changes.seq, changes.totals
            if catalog is not self._catalog or epoch != self._epoch or seq < self._seq \
                    or changes.trimmed > self._seq or not changes.complete or seq - self._base >= _SPAN:
                self._reset(catalog, len(catalog.ids), epoch, base=seq)
            else:
                self._update(catalog, changes)
            self._seq = seq
            if self.preload and self._loader is None:
                self._loader = threading.Thread(target=self.load, args=(catalog, epoch), daemon=True,
                                                name="item-counts-load")
                self._loader.start()
            if len(rows) and rows.max() >= len(self._known):
                self._grow(int(rows.max()) + 1)
            missing = np.flatnonzero(~self._known[rows])
            if len(missing):
                missing = missing[np.unique(rows[missing], return_index=True)[1]]  # a row once
                names = catalog.ids.take(rows[missing]) if ids is None else [ids[i] for i in missing.tolist()]
                *columns, asof = self.store.counts_as_of(names)
                self._set(rows[missing], _matrix(columns))
                self._known[rows[missing]] = True
                self._asof[rows[missing]] = max(asof - self._base, 0)  # behind only if Redis went back: reset next
                self.reread += len(missing)
            values = self._values[rows].astype(np.float64)
            return np.column_stack([values[:, :2], self._exposure[rows], values[:, 2]]), totals

    def start(self, catalog) -> None:
        """Begin mirroring `catalog`'s counts now (the service's start-up), not at the first request."""
        try:
            self.read(catalog, np.zeros(0, dtype=np.int64), [])
        except StoreError as exc:
            log.warning("item counts: not started (the first request starts them): %s", exc)

    def load(self, catalog, epoch: str) -> bool:
        """Fill in every row of `catalog` from a scan of the counts; True when merged. Changes
        made during the scan are forgotten again at the merge (they are on the change list)."""
        base = self._base  # a reset after this (for any reason) discards this load at its merge
        try:
            since = self.store.item_changes(0, limit=0).seq
            n = len(catalog.ids)
            raw = np.zeros((n, 5), dtype=np.float64)
            for k, kind in enumerate(self.store.COUNT_KINDS):
                for item_ids, counts in self.store.scan_counts(kind):
                    rows = catalog.row_of.get_many(item_ids, remember=False)  # (a scan: nothing to reuse)
                    ok = (rows >= 0) & (rows < n)
                    raw[rows[ok], k] = counts[ok]
            attributed = np.minimum(raw[:, 2], raw[:, 1])  # `store.counts.organic`, for all rows
            loaded = np.column_stack([raw[:, 0] - attributed, raw[:, 1] - attributed, raw[:, 3], raw[:, 4]])
            with self._lock:
                changes = self.store.item_changes(since, limit=self.store.CHANGES_KEPT, counts_up_to=0,
                                                  shown_limit=self.store.SHOWN_KEPT)  # all of them
                if catalog is not self._catalog or epoch != self._epoch or changes.epoch != epoch \
                        or changes.trimmed > since or not changes.complete or base != self._base:
                    # Started over meanwhile (that reset has cleared the loader), or more changed during
                    # the scan than the change list keeps: the next read starts another load.
                    self.discarded += 1
                    ITEM_COUNTS_LOADS.labels("discarded").inc()
                    log.info("item counts load discarded (the catalog, the counts epoch or the change list "
                             "moved on during the scan); the next read loads again")
                    if self._loader is threading.current_thread():  # (not a newer load already under way)
                        self._loader = None
                    return False
                unknown = np.flatnonzero(~self._known[:n])
                self._set(unknown, loaded[unknown])
                self._known[:n] = True
                self._asof[unknown] = since - base  # exact as of any point of the scan, unless changed during it ...
                self._forget(catalog, changes)  # ... and those are forgotten: re-read when met
                self._loaded = True
                self.loads += 1
                ITEM_COUNTS_LOADS.labels("merged").inc()
                return True
        except Exception as exc:  # noqa: BLE001 - a background thread: logged and counted, never raised
            self.failures += 1
            ITEM_COUNTS_LOADS.labels("failed").inc()
            BACKGROUND_FAILURES.labels("item_counts_load").inc()
            log.warning("item counts not loaded (rows are read one by one until a later load): %r", exc)
            with self._lock:
                if self._loader is threading.current_thread():
                    self._loader = None  # the next read tries again
            return False

    def tops(self, n: int, live: bool = True):
        """From this copy, what `store.quality_columns(n)` and `store.live_columns(n)` read in
        Redis (`serving.popular`'s catalog-wide signals, every `ttl_s`), by catalog row: the rows,
        events and engaged events of the n items with most events, and (`live`) the rows, live
        exposure and live engagements of the n items with most live exposure, in numpy over the
        catalog's rows instead of ~40,000 items read from Redis (~100 ms of Redis and 60 ms of
        Python at 1M items, with every request waiting behind it).
        None until a load has filled in every row. A row changed since and not met by a request
        since counts as last known; equal counts are ordered by row (Redis orders them by id),
        and an item none of whose events is left once the attributed ones are taken out is not
        among the items with most events (Redis ranks the raw count). The top rows are chosen
        outside the lock (a count changed by a request meanwhile may or may not be in the
        ranking), their counts read under it. Raises StoreError while Redis is away."""
        catalog = self._catalog
        if catalog is None or not self._loaded:
            return None
        self.read(catalog, np.zeros(0, dtype=np.int64), [])  # take in what changed
        with self._lock:
            if self._catalog is not catalog or not self._loaded:
                return None
            m = min(len(catalog.ids), len(self._known))
            values, exposure = self._values[:m], self._exposure[:m]  # views: a later _grow makes new arrays
        floors = self._floors if self._floors[0] is catalog else (catalog, 0.0, 0.0)
        own = _top(values[:, 0], n, floors[1])
        shown = _top(exposure, n, floors[2]) if live else own[:0]
        with self._lock:
            counted = values[own].astype(np.float64)
            exposed, rewards = exposure[shown], values[shown, 2].astype(np.float64)  # (copies: fancy indexing)
        self._floors = (catalog, float(counted[-1, 0]) if n and len(own) == n else 0.0,
                        float(exposed[-1]) if n and len(shown) == n else 0.0)
        return Tops(own, counted[:, 0], counted[:, 1], shown, exposed, rewards, catalog.ids.take)

    @property
    def loading(self) -> bool:
        """A background load is under way."""
        loader = self._loader
        return loader is not None and loader.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the background load (if any) is done; True if every row is loaded by then."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)
        return self._loaded

    def _update(self, catalog, changes) -> None:
        """Take in the changed items' counts when they came along (else forget those rows), then
        add the logged exposure to the known rows older than its entry."""
        if changes.items:
            rows, ok = _located(catalog, changes.items, len(self._known))
            if changes.counts is None:
                self._known[rows[ok]] = False
            else:
                self._set(rows[ok], _matrix(changes.counts)[ok])
                self._known[rows[ok]] = True
                self._asof[rows[ok]] = changes.seq - self._base
        if changes.shown:
            ids, seqs, weights = _flat(changes.shown)
            at, ok = _located(catalog, ids, len(self._known))
            at, seqs, weights = at[ok], seqs[ok], weights[ok]
            ok = self._known[at] & (self._asof[at].astype(np.int64) < seqs - self._base)
            np.add.at(self._exposure, at[ok], weights[ok])

    def _forget(self, catalog, changes) -> None:
        """Forget the rows of every item changed (exposure included)."""
        rows, ok = _located(catalog, changes.items + _flat(changes.shown)[0], len(self._known))
        self._known[rows[ok]] = False

    def _reset(self, catalog, n: int, epoch: str, base: int) -> None:
        self._catalog, self._epoch, self._base = catalog, epoch, base
        self._values = np.zeros((n, 3), dtype=np.float32)
        self._exposure = np.zeros(n, dtype=np.float64)
        self._known = np.zeros(n, dtype=bool)
        self._asof = np.zeros(n, dtype=np.uint32)
        self._loader = None  # a load of the old catalog or epoch is discarded at its merge
        self._loaded = False

    def _grow(self, n: int) -> None:
        """Room for rows up to n (items added since the catalog's build), and an eighth more:
        doubling would make a 1M-item catalog's copy 25 MB larger at its first new item."""
        n = max(n, len(self._known) + len(self._known) // 8, 1024)
        def grown(array):
            out = np.zeros((n, *array.shape[1:]), dtype=array.dtype)
            out[: len(array)] = array
            return out
        self._values, self._exposure, self._known, self._asof = map(grown, (self._values, self._exposure,
                                                                           self._known, self._asof))

    def _set(self, rows: np.ndarray, matrix: np.ndarray) -> None:
        """Rows' four counts (events, engaged events, live exposure, live engagements)."""
        self._values[rows] = matrix[:, [0, 1, 3]]
        self._exposure[rows] = matrix[:, 2]


class Tops(NamedTuple):
    """`ItemCounts.tops`: the items with most events and those with most live exposure, by row."""

    rows: np.ndarray        # most events first
    events: np.ndarray
    engaged: np.ndarray
    shown: np.ndarray       # rows, most live exposure first
    exposure: np.ndarray
    rewards: np.ndarray     # their live engagements
    ids_of: Callable[[np.ndarray], list[str]]  # rows -> item ids, of the catalog ranked


_SPAN = 2 ** 31  # sequence numbers a mirror spans before it starts over (half of uint32's range: room to spare)


def _top(values: np.ndarray, n: int, floor: float = 0.0) -> np.ndarray:
    """The rows of the n highest values above 0, highest first, equal ones by row (a sorted
    set's top n). With a `floor` (the n-th value the last time), only the rows at or above it
    are ranked if there are n of them, which the n highest then all are: at 1M items, ranking
    every row with a count (~660,000) took most of the catalog-wide refresh's CPU.

    >>> _top(np.array([0.0, 5.0, 1.0, 5.0, 3.0]), 3).tolist()
    [1, 3, 4]
    >>> _top(np.array([0.0, 5.0, 1.0, 5.0, 3.0]), 3, floor=3.0).tolist()
    [1, 3, 4]
    >>> _top(np.array([0.0, 5.0, 1.0, 5.0, 3.0]), 3, floor=4.0).tolist()  # too few at or above it
    [1, 3, 4]
    """
    rows = np.flatnonzero(values >= floor) if floor > 0 else None
    if rows is None or len(rows) < n:
        rows = np.flatnonzero(values > 0)
    if len(rows) > n:
        rows = np.sort(rows[np.argpartition(-values[rows], n - 1)[:n]])
    return rows[np.argsort(-values[rows], kind="stable")]


def _located(catalog, ids: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The catalog rows of `ids` (-1: none), and which of them are rows below n."""
    rows = catalog.row_of.get_many(ids)
    return rows, (rows >= 0) & (rows < n)


def _flat(shown) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Exposure log entries (seq, ids, weights) as one list of ids and arrays of seqs and weights."""
    ids = [item_id for _, item_ids, _ in shown for item_id in item_ids]
    sizes = [len(item_ids) for _, item_ids, _ in shown]
    seqs = np.repeat(np.array([seq for seq, _, _ in shown], dtype=np.int64), sizes)
    weights = np.fromiter((w for _, _, ws in shown for w in ws), dtype=np.float64, count=len(ids))
    return ids, seqs, weights


def _matrix(columns) -> np.ndarray:
    """(n, 4) of per-item count columns (None: 0)."""
    return np.array([[float(v or 0.0) for v in column] for column in columns], dtype=np.float64).T
