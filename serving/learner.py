"""Learning from the reward stream, and saving what was learned.

The reward stream in Redis is the record of truth: `/feedback` appends to it before it
answers, and the learner consumes it in order from a cursor. A snapshot stores the model
together with that cursor, so after a restart the learner replays exactly the rewards the
snapshot has not seen. A reward is learned once per (event_id, item_id): the first stream
entry for the pair wins, and keeps winning when it is replayed.
"""

from __future__ import annotations

import logging
import threading
import time

from banditrec.config import FeedbackConfig, SnapshotConfig
from bandit.vw import VWModel
from store import Store

log = logging.getLogger(__name__)

MARK_TTL_EXTRA_S = 7 * 86400.0  # "learned" marks outlive the reward window by a week


class Learner:
    """Consumes the reward stream into a model; one lock orders learning and snapshots."""

    def __init__(self, store: Store, model: VWModel, cfg: FeedbackConfig, *, cursor: str = "0-0",
                 version: int = 0):
        self.store = store
        self.model = model
        self.cfg = cfg
        self.cursor = cursor
        self.version = version
        self.learned = 0            # rewards learned by this process
        self.since_snapshot = 0
        self.snapshot_at = time.monotonic()
        self._lock = threading.Lock()

    def catch_up(self, batch_size: int = 1000) -> int:
        """Learn every reward after the cursor; returns how many were learned."""
        learned = 0
        # A mark must outlive any replay that could meet a duplicate of its entry.
        mark_ttl = max(self.cfg.reward_wait_s + self.cfg.expired_grace_s, 0.0) + MARK_TTL_EXTRA_S
        with self._lock:
            while batch := self.store.read_rewards(self.cursor, batch_size):
                allowed = self.store.claim_rewards(batch, mark_ttl)
                for (sid, entry), ok in zip(batch, allowed):
                    if ok:
                        try:
                            self.model.learn(entry["shared"], entry["action"], entry["reward"],
                                             max(entry["p"], self.cfg.clip_p))
                            learned += 1
                        except Exception as exc:  # one bad entry must not stop learning for good
                            log.exception("reward %s cannot be learned; moved to the dead-letter list", sid)
                            self.store.dead_letter(sid, entry, repr(exc))
                    self.cursor = sid
                if len(batch) < batch_size:
                    break
            self.learned += learned
            self.since_snapshot += learned
        return learned

    def snapshot(self, keep: int) -> int:
        """Save model + cursor as a new version (if anything was learned since the last one)."""
        with self._lock:
            if self.since_snapshot == 0 and self.version:
                return self.version
            blob = self.model.to_bytes()
            self.version = self.store.put_snapshot(blob, {"cursor": self.cursor, "learned": self.learned}, keep)
            self.since_snapshot = 0
            self.snapshot_at = time.monotonic()
            return self.version

    def maybe_snapshot(self, cfg: SnapshotConfig) -> None:
        """Catch up, then snapshot if `interval_s` passed or `every_n_updates` were learned."""
        due = time.monotonic() - self.snapshot_at >= cfg.interval_s
        if not due and self.since_snapshot < cfg.every_n_updates:
            return
        self.catch_up()
        if self.since_snapshot:
            self.snapshot(cfg.keep)
