"""Learning from the reward stream, and saving what was learned.

The reward stream in Redis is the record of truth: `/feedback` appends to it before it
answers, and the learner consumes it in order from a cursor. A snapshot stores the model
(and its bootstrap replicas) together with that cursor, so after a restart the learner
replays exactly the rewards the snapshot has not seen. A reward is learned once per
(event_id, item_id): the first stream entry for the pair wins, and keeps winning when it
is replayed. Entries have a kind: "reward" (from a client), "default" (no reward came in
time), "final" (the aggregate of a pair's rewards, for the sum/max modes).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from bandit.features import at_position
from bandit.vw import Replicas, VWModel, replica_seed
from banditrec.config import FeedbackConfig, SnapshotConfig
from serving.metrics import BACKGROUND_FAILURES
from serving.records import RewardEntry, is_learnable
from store import Store

log = logging.getLogger(__name__)

MARK_TTL_EXTRA_S = 7 * 86400.0  # "learned" marks outlive the reward window by a week


def fitted_replicas(replicas: Replicas | None, n: int, model: VWModel, args: str,
                    learns: bool = True) -> Replicas | None:
    """`replicas` cut or padded to `n` (new ones: copies of `model`); None for 0. New replicas
    that will learn get their own copy of the model's weights (`bandit.linear`); ones that only
    serve share the model's."""
    models = list(replicas.models) if replicas is not None else []
    if len(models) == n:
        return replicas
    if n > len(models):
        copy, linear = model.to_bytes(), model.synced_linear()
        for _ in range(n - len(models)):
            models.append(VWModel(args, blob=copy))
            models[-1].linear = linear.copy() if linear is not None and learns else linear
    return Replicas(models[:n]) if n else None


class Learner:
    """Consumes the reward stream into a model; one lock orders learning, snapshots and swaps."""

    def __init__(self, store: Store, model: VWModel, cfg: FeedbackConfig, *, cursor: str = "0-0",
                 version: int = 0, total: int = 0, replicas: Replicas | None = None,
                 importance_weighted: bool = True, enabled: bool = True, position_bias: bool = True):
        self.store = store
        self.model = model
        self.replicas = replicas
        self.cfg = cfg
        self.cursor = cursor
        self.version = version
        self.total = total          # rewards the model has learned over its lifetime
        self.learned = 0            # rewards learned by this process
        self.since_snapshot = 0
        self.snapshot_at = time.monotonic()
        self.importance_weighted = importance_weighted
        self.enabled = enabled      # False in logging_only mode: rewards wait in the stream
        self.position_bias = position_bias  # learn the slate position as a feature (scored at the top)
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()

    def catch_up(self, batch_size: int = 100, max_entries: int | None = None) -> int:
        """Learn the rewards after the cursor (at most about `max_entries` stream entries);
        returns how many were learned. The lock is taken per batch of `batch_size`, which
        bounds how long a request that learns its own reward waits behind a long replay in the
        background (about 0.25 ms per entry with Thompson's 9 models)."""
        if not self.enabled:
            return 0
        learned, read = 0, 0
        mark_ttl = self.cfg.reward_wait_s + self.cfg.expired_grace_s + MARK_TTL_EXTRA_S
        while max_entries is None or read < max_entries:
            with self._lock:
                batch = self.store.read_rewards(self.cursor, batch_size)
                if not batch:
                    break
                read += len(batch)
                wanted = [(sid, e) for sid, e in batch if is_learnable(e)]
                claims = self.store.claim_rewards(wanted, mark_ttl) if wanted else []
                firsts, n_batch = [], 0
                for (sid, data), claim in zip(wanted, claims):
                    entry = self._learn(sid, data) if claim else None
                    if entry is not None:
                        n_batch += 1
                        if claim == 1:  # the first time, not a replay: one more labelled impression
                            firsts.append(entry)
                if firsts:
                    self.store.count_labelled([e.item_id for e in firsts])
                if n_batch:
                    self._sync_copies()
                self.cursor = batch[-1][0]
                self.learned += n_batch
                self.total += n_batch
                self.since_snapshot += n_batch
                learned += n_batch
            if len(batch) < batch_size:
                break
        return learned

    def _learn(self, sid: str, data: dict) -> RewardEntry | None:
        """Learn one stored reward; None (and a dead letter) if it cannot be learned."""
        try:
            entry = RewardEntry.from_json(data)
            weighted = entry.importance_weighted  # as the decision's strategy learns
            p = max(entry.p, self.cfg.clip_p) if (self.importance_weighted if weighted is None else weighted) else 1.0
            action = at_position(entry.action, entry.position) if self.position_bias else entry.action
            touched = self.model.touches(entry.shared, action)  # the same weights for every model
            self.model.learn(entry.shared, action, entry.reward, p, touched)
            if self.replicas is not None:
                self.replicas.learn(entry.shared, action, entry.reward, p, replica_seed(entry.event_id, entry.item_id),
                                    touched)
            return entry
        except Exception as exc:  # one bad entry must not stop learning for good
            log.exception("reward %s cannot be learned; moved to the dead-letter list", sid)
            self.store.dead_letter(sid, data, repr(exc))
            return None

    def snapshot(self, keep: int) -> int:
        """Save model + replicas + cursor as a new version (if anything changed since the last).
        Learning waits only while the models are serialised; compressing and storing them (a
        second or more for Thompson's 9 models at a large catalog) happens outside the lock."""
        with self._snapshot_lock:  # one snapshot at a time
            with self._lock:
                if self.since_snapshot == 0 and self.version:
                    return self.version
                base = self.version
                latest = self.store.latest_version()
                if latest > base:  # a rollback or a warm start came in: adopt it, do not bury it
                    log.warning("snapshot not written: model v%d in Redis is newer than ours (v%d) and "
                                "waits to be adopted", latest, base)
                    BACKGROUND_FAILURES.labels("snapshot").inc()
                    return base
                replicas = self.replicas.to_bytes() if self.replicas is not None else []
                blob = self.model.to_bytes()
                self._check_copies(blob, replicas)
                meta = {"cursor": self.cursor, "learned": self.learned, "t": self.total}
                taken = self.since_snapshot
            version = self.store.put_snapshot(blob, meta, keep, replicas, expect_latest=base)
            with self._lock:
                if version is None or self.version != base:  # a rollback was written or adopted meanwhile
                    return self.version
                self.version = version
                self.since_snapshot -= taken  # what was learned while we stored counts toward the next one
                self.snapshot_at = time.monotonic()
                return self.version

    def _sync_copies(self) -> None:
        """Bring the copies of the weights the requests score from up to date with a batch just
        learned (here, in the learning thread, unless a request read them first; a batch's
        updates share many weights: the shared features, the constant, the same items)."""
        for model in [self.model, *(self.replicas.models if self.replicas is not None else ())]:
            model.synced_linear()

    def _check_copies(self, blob: bytes, replica_blobs: list[bytes]) -> None:
        """The copies of the weights a process that learns scores from (`bandit.linear`), each
        compared with its model as just saved: equal unless a model's updates move weights
        their examples do not touch. One that differs is read again from the model (logged and
        counted); its model is scored through VW if that fails. The caller holds the lock."""
        models = [self.model, *(self.replicas.models if self.replicas is not None else ())]
        for model, saved in zip(models, [blob, *replica_blobs]):
            linear = model.synced_linear()
            if linear is None or linear.matches(saved):
                continue
            BACKGROUND_FAILURES.labels("weights_copy").inc()
            model.linear = type(linear).of(model, saved, learns=True)
            log.error("the copy of model v%d's weights that scores requests differed from the model (or the "
                      "saved model could not be read); %s",
                      self.version, "read again" if model.linear is not None else "scoring through VW from now on")

    def maybe_snapshot(self, cfg: SnapshotConfig) -> None:
        """Catch up, then snapshot if `interval_s` passed or `every_n_updates` were learned."""
        due = time.monotonic() - self.snapshot_at >= cfg.interval_s
        if not due and self.since_snapshot < cfg.every_n_updates:
            return
        self.catch_up()
        if self.since_snapshot:
            self.snapshot(cfg.keep)

    def resize_replicas(self, n: int, args: str, *, grow_only: bool = False) -> bool:
        """Keep `n` bootstrap replicas (a strategy that needs more was switched to, or an
        exploration canary that needs them started or ended; with `grow_only`, at least `n`);
        True if the count changed. New ones start as copies of the model and diverge as they
        learn (each reward Poisson(1) times, the first replicas' draws unchanged). Dropped ones
        are not closed here: requests in flight may still be scoring with them."""
        with self._lock:
            have = len(self.replicas) if self.replicas is not None else 0
            if n == have or (grow_only and n < have):
                return False
            self.replicas = fitted_replicas(self.replicas, n, self.model, args, learns=self.enabled)
            return True

    def adopt(self, model: VWModel, replicas: Replicas | None, meta: dict, *,
              needed: Callable[[], int] | None = None, args: str = "") -> None:
        """Continue from a snapshot written elsewhere (a rollback): its model, cursor and count.
        With `needed`, the replicas are fitted, under the lock, to as many as it says now (the
        count may have changed while the snapshot was being loaded). The old model is not closed
        here: requests in flight may still be scoring with it; it is freed when the last of them
        lets go of it."""
        with self._lock:
            if needed is not None:
                replicas = fitted_replicas(replicas, needed(), model, args, learns=self.enabled)
            self.model, self.replicas = model, replicas
            self.cursor, self.version, self.total = meta["cursor"], meta["version"], meta.get("t", 0)
            self.since_snapshot = 0
