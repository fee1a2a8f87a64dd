"""What this process showed, counted as the items' live exposure (the denominator of their
quality) in batches instead of with every decision.

Every slate shows ~50 items. Counted at once, each decision wrote 50 exposure increments and
put 50 items on the item-count change list, which every process then re-read on its next
request: about 1 ms of Redis time per request at 1M items (`INFO commandstats`), most of
the Redis work a request causes. A buffer adds a slate's items up in this process and a
background task writes the sums every `realtime.exposure_flush_s` seconds, in scripts of at
most `CHUNK` items, so an item shown a hundred times in that second is counted in one
increment and enters the change list once.

The price: other processes see this process's exposure up to `exposure_flush_s` late (a
second's impressions, among an item's lifetime ones), and a worker that dies loses at most
that much exposure. Nothing a client was told depends on it: decisions, rewards and events
are written before they are acknowledged, as before. A failed write is logged and counted.
Its sums are kept for the next attempt when nothing reached Redis (the breaker was open; up
to `MAX_PENDING` items, then dropped, logged and counted), and dropped (logged, counted) after
a timeout or a lost connection, which may come after Redis ran the script: exposure is
under-counted then, never counted twice. Without the background task (`start_threads=False`: tests, the
simulator, scripts) or with `exposure_flush_s = 0` (the default), every decision counts its
slate at once.

Measured at 1M items in-process (1000 candidates, epsilon-greedy): the median request fell
by 2-3 ms, but p99 rose from ~23-25 to 28-42 ms, when every process re-read the batch's
items' counts after a flush. Now that a flush is added to the other processes' counts from
the exposure log (`serving.itemcounts`), p99 is still 25-34 ms against 20-21 ms at once
(the flush's script holds Redis, and this process, for the batch's thousand-odd items):
off by default.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from serving.metrics import BACKGROUND_FAILURES
from store import StoreError

log = logging.getLogger(__name__)

CHUNK = 1000          # items per script call: a flush never holds Redis long
MAX_PENDING = 200_000  # distinct items kept across failed flushes before they are dropped


class ExposureBuffer:
    def __init__(self, store, flush_s: float):
        self.store = store
        self.flush_s = flush_s
        self.background = False  # set when a background task flushes; else `log_decision` writes at once
        self._lock = threading.Lock()
        self._weights: Counter = Counter()    # item_id -> summed exposure weight
        self._positions: Counter = Counter()  # position -> impressions
        self.flushes = 0
        self.dropped = 0  # items whose exposure was dropped after failed flushes

    @property
    def buffering(self) -> bool:
        return self.background and self.flush_s > 0

    def add(self, shown: list[tuple[str, int, float]]) -> None:
        """A slate's (item_id, position, exposure weight) items, to be written at the next flush."""
        with self._lock:
            for item_id, position, weight in shown:
                self._weights[item_id] += weight
                self._positions[int(position)] += 1

    def pending(self) -> int:
        with self._lock:
            return len(self._weights)

    def flush(self) -> int:
        """Write what was added since the last flush; the number of items written. Raises
        StoreError (the unwritten sums kept for the next flush, or dropped: see the module)."""
        with self._lock:
            weights, positions = self._weights, self._positions
            self._weights, self._positions = Counter(), Counter()
        if not weights:
            return 0
        items = list(weights.items())
        written = 0
        try:
            for start in range(0, len(items), CHUNK):
                chunk = items[start:start + CHUNK]
                self.store.count_exposure(dict(chunk), positions if start == 0 else {})
                written = start + len(chunk)
        except StoreError as exc:
            unwritten, unwritten_positions = items[written:], positions if written == 0 else Counter()
            if exc.__cause__ is None:  # refused before anything was sent (the breaker is open): retried next time
                self._keep(unwritten, unwritten_positions)
            else:  # a timeout or a lost connection may come after Redis ran the script: never count twice
                self._drop(unwritten)
            raise
        self.flushes += 1
        return written

    def _keep(self, items: list[tuple[str, float]], positions: Counter) -> None:
        """Put unwritten sums back for the next flush, unless too many are waiting already."""
        with self._lock:
            if len(self._weights) + len(items) <= MAX_PENDING:
                self._weights.update(dict(items))
                self._positions.update(positions)
                return
        self._drop(items, "Redis has not taken it for a while")

    def _drop(self, items: list[tuple[str, float]], why: str = "it may have been written already") -> None:
        with self._lock:
            self.dropped += len(items)
        BACKGROUND_FAILURES.labels("exposure_dropped").inc()
        log.warning("exposure of %d items dropped (%s)", len(items), why)
