"""The separate learner: one process learns, the serving workers adopt its snapshots.

With several worker processes (`server.workers > 1`), no worker learns. One learner
(`banditrec learn`, started by `banditrec serve` unless `server.learner = "external"`)
consumes the reward stream in order from its snapshot's cursor (exactly once per
(event_id, item_id), as in-process learning does), closes due decisions (default and
aggregated rewards), and publishes a snapshot every `snapshot.interval_s` or
`snapshot.every_n_updates` rewards; each worker adopts a newer snapshot within
`min(5 s, snapshot.interval_s)`. It also records its progress in Redis (cursor, rewards
learned, time), which is what "learn lag" and "stream backlog" are read from.

One learner per deployment: it holds the Redis lock "learner" and renews it; a second one
waits until the lock is free (the first stopped or died: the lock expires after
`LOCK_TTL_S`). A learner that finds its lock taken stops learning at once.
"""

from __future__ import annotations

import logging
import threading
import time

from banditrec.config import Config
from bandit.strategies import STRATEGIES
from serving.rewards import close_due
from serving.service import adopt_rollback, make_learner
from store import Store, StoreError

log = logging.getLogger(__name__)

LOCK = "learner"
LOCK_TTL_S = 10.0


class LearnerProcess:
    """The learning half of a service: config, store, clock and learner (what `close_due` needs)."""

    def __init__(self, config: Config, store: Store, clock=time.time):
        self.config, self.store, self.clock = config, store, clock
        self.strategy = STRATEGIES[config.exploration.strategy](config.exploration.selected)
        self.learner = make_learner(config, store, self.strategy, store.latest_snapshot(), learns=True)
        self._token: str | None = None
        self._renewed = 0.0

    def step(self, block_ms: int = 200) -> int:
        """Close due decisions, learn what is new, snapshot when due; wait up to `block_ms`
        for new rewards when there was nothing to learn. Returns rewards learned."""
        adopt_rollback(self.config, self.store, self.strategy, self.learner)
        learned = close_due(self) if self.config.feedback.reward_wait_s >= 0 else 0
        learned += self.learner.catch_up()
        self.learner.maybe_snapshot(self.config.snapshot)
        self.store.put_learner_progress({"cursor": self.learner.cursor, "t": self.learner.total,
                                         "version": self.learner.version, "ts": time.time()})
        if not learned:
            self.store.wait_rewards(self.learner.cursor, block_ms)
        return learned

    def acquire(self, stop: threading.Event, poll_s: float = 1.0) -> bool:
        """Wait for the learner lock (until `stop`); True once held."""
        while not stop.is_set():
            try:
                self._token = self.store.acquire_lock(LOCK, LOCK_TTL_S)
            except StoreError as exc:
                log.warning("learner lock: %s", exc)
            if self._token:
                self._renewed = time.monotonic()
                return True
            log.info("another learner holds the lock; waiting")
            stop.wait(poll_s)
        return False

    def renew(self) -> bool:
        """Keep the lock (at most every second); False if it was lost."""
        if time.monotonic() - self._renewed < 1.0:
            return True
        ok = self.store.renew_lock(LOCK, self._token, LOCK_TTL_S)
        self._renewed = time.monotonic()
        return ok

    def run(self, stop: threading.Event) -> None:
        """Learn until `stop` is set; then a final catch-up and snapshot, and the lock is released."""
        if not self.acquire(stop):
            return
        if self.store.latest_version() != self.learner.version:  # written while we waited for the lock
            self.close()
            self.learner = make_learner(self.config, self.store, self.strategy, self.store.latest_snapshot(),
                                        learns=True)
        log.info("learner started at model v%d, cursor %s", self.learner.version, self.learner.cursor)
        try:
            while not stop.is_set():
                try:
                    if not self.renew():
                        log.error("learner lock lost (another learner took over); stopping")
                        return
                    self.step()
                except StoreError as exc:  # Redis away: nothing to learn from; try again shortly
                    log.warning("learner: %s", exc)
                    stop.wait(1.0)
            self.learner.catch_up()
            self.learner.snapshot(self.config.snapshot.keep)
        finally:
            try:
                self.store.release_lock(LOCK, self._token)
            except StoreError:
                pass  # it expires by itself
            self.close()

    def close(self) -> None:
        self.learner.model.close()
        if self.learner.replicas is not None:
            self.learner.replicas.close()
