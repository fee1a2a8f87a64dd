"""The separate learner: one process learns, the serving workers adopt its snapshots.

With several worker processes (`server.workers > 1`), no worker learns. One learner
(`banditrec learn`, started by `banditrec serve` unless `server.learner = "external"`)
consumes the reward stream in order from its snapshot's cursor (exactly once per
(event_id, item_id), as in-process learning does), closes due decisions (default and
aggregated rewards), refits the embeddings when it is due (the `refitter` it is given,
`SERVED_STEPS.refitter` from `banditrec learn`: checked on a thread of its own, each full
build in a process of its own; the workers swap the new space in), and publishes a snapshot
every `snapshot.interval_s` or `snapshot.every_n_updates` rewards; each worker adopts a newer
snapshot within `min(5 s, snapshot.interval_s)`. It also records its progress in Redis (cursor, rewards
learned, time), which is what "learn lag" and "stream backlog" are read from.

One learner per deployment: it holds the Redis lock "learner", renewed every second by a
heartbeat thread; a second one waits until the lock is free (the first stopped or died:
the lock expires after `LOCK_TTL_S`). A learner that loses the lock (Redis away for longer
than that, or another learner took over) pauses, waits for the lock again, and continues
from the newest snapshot. Snapshots are written only if no other was written since the
learner's own (`put_snapshot(expect_latest=...)`), so two learners never bury each other's
(or a rollback's) versions.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from banditrec.config import Config
from serving import heap
from serving.background import Periodic
from serving.canary import PENDING, exploration_strategy
from serving.live import LiveExploration
from serving.models import adopt_latest, make_learner
from serving.rewards import close_due
from store import Store, StoreError

log = logging.getLogger(__name__)

LOCK = "learner"
LOCK_TTL_S = 10.0


class LearnerProcess:
    """The learning half of a service: config, store, clock and learner (what `close_due` needs)."""

    def __init__(self, config: Config, store: Store, clock=time.time, refitter=None):
        """`refitter(config, store, clock)` makes the embeddings' refit (None: no refits)."""
        self.config, self.store, self.clock, self.refitter = config, store, clock, refitter
        self.exploring = LiveExploration(config.exploration)
        self.strategy, self.replicas = self.exploring.now.strategy, self.exploring.now.strategy.replicas
        self.learner = make_learner(config, store, self.strategy, store.latest_snapshot(), learns=True,
                                    serves=False)
        self._followed_at = -float("inf")
        self._token: str | None = None
        self._held = threading.Event()  # set while the lock is ours (the heartbeat clears it on loss)

    def step(self, block_ms: int = 200, max_entries: int = 5000) -> int:
        """Adopt a newer snapshot written elsewhere, close due decisions, learn what is new (at
        most about `max_entries` stream entries), snapshot when due; wait up to `block_ms` for
        new rewards when there was nothing to do. Returns the reward entries handled."""
        if time.monotonic() - self._followed_at >= self.config.canary.check_s:
            self.follow()
        self.adopt_newer()
        handled = close_due(self)
        handled += self.learner.catch_up(max_entries=max_entries)
        self.learner.maybe_snapshot(self.config.snapshot)
        self.store.put_learner_progress({"cursor": self.learner.cursor, "t": self.learner.total,
                                         "version": self.learner.version, "ts": time.time()})
        if not handled:
            if self.learner.enabled:  # block below the socket timeout: a timeout would look like an outage
                self.store.wait_rewards(self.learner.cursor, min(block_ms, self.config.redis.socket_timeout_ms // 2))
            else:
                time.sleep(block_ms / 1000.0)  # logging_only: the stream is kept, not consumed
        return handled

    def adopt_newer(self) -> bool:
        """Continue from a snapshot newer than ours (a rollback, or a previous learner's last one)."""
        return adopt_latest(self.config, self.store, self.strategy, self.learner, learns=True,
                            needed=lambda: self.replicas, serves=False)

    def follow(self) -> None:
        """Train the bootstrap replicas the served strategies need: the live exploration's
        (`serving.live`), or a running exploration canary's if it needs more."""
        self._followed_at = time.monotonic()
        record = self.store.canary()  # first: a promotion writes the live exploration before it ends the canary
        if self.exploring.follow(self.store):
            self.strategy = self.exploring.now.strategy
        canary = exploration_strategy(record, PENDING)
        self.replicas = max(self.strategy.replicas, canary.replicas if canary is not None else 0)
        if self.learner.resize_replicas(self.replicas, self.config.model.vw_args()):
            log.info("learning %d bootstrap replicas", self.replicas)

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renew the lock every second; clear `_held` when it is lost (expired, taken over)."""
        while not stop.wait(1.0):
            if not self._held.is_set():
                continue
            try:
                ok = self.store.renew_lock(LOCK, self._token, LOCK_TTL_S)
            except StoreError:
                ok = False  # Redis away: we cannot know; stop learning until we hold it again
            if not ok:
                log.error("learner lock lost; learning pauses until it is ours again")
                self._held.clear()

    def acquire(self, stop: threading.Event, poll_s: float = 1.0) -> bool:
        """Wait for the learner lock (until `stop`); True once held."""
        while not stop.is_set():
            try:
                self._token = self.store.acquire_lock(LOCK, LOCK_TTL_S)
            except StoreError as exc:
                log.warning("learner lock: %s", exc)
            if self._token:
                self._held.set()
                return True
            log.info("another learner holds the lock; waiting")
            stop.wait(poll_s)
        return False

    def run(self, stop: threading.Event, parent: int | None = None) -> None:
        """Learn until `stop` is set (or, with `parent`, until that process is gone); then a
        final catch-up and snapshot, and the lock is released."""
        beat = threading.Thread(target=self._heartbeat, args=(stop,), name="learner-lock", daemon=True)
        beat.start()
        refit = None
        if self.config.index.refit_check_s > 0 and self.refitter is not None:  # the workers do not refit
            refitter = self.refitter(self.config, self.store, self.clock)
            refit = Periodic("refit", self.config.index.refit_check_s,
                             lambda: refitter() if self._held.is_set() else None).start()
        trim = heap.trim_every(self.config.server.heap_trim_s)
        try:
            while not stop.is_set():
                if parent is not None and os.getppid() != parent:
                    log.error("the process that started the learner is gone; stopping")
                    break
                if not self._held.is_set():
                    if not self.acquire(stop):
                        break
                    self.adopt_newer()  # whatever was written while we waited
                    log.info("learner holds the lock at model v%d, cursor %s", self.learner.version,
                             self.learner.cursor)
                try:
                    self.step()
                except StoreError as exc:  # Redis away: nothing to learn from; try again shortly
                    log.warning("learner: %s", exc)
                    stop.wait(1.0)
                except Exception:  # a bug must not end learning for good: log, back off, go on
                    log.exception("learner step failed")
                    stop.wait(5.0)
            if self._held.is_set():
                self.learner.catch_up()
                self.learner.snapshot(self.config.snapshot.keep)
        finally:
            stop.set()
            for task in (refit, trim):
                if task is not None:
                    task.stop()
            if self._held.is_set():
                try:
                    self.store.release_lock(LOCK, self._token)
                except StoreError:
                    pass  # it expires by itself
            self.close()

    def close(self) -> None:
        self.learner.model.close()
        if self.learner.replicas is not None:
            self.learner.replicas.close()
