"""Closing decisions whose reward wait is over: default rewards and aggregated rewards.

For each decision past `feedback.reward_wait_s` (+ `feedback.close_delay_s`, so that a
reward accepted at the last moment is in the stream first): the items the client marked as seen (or,
without such marks, the top `feedback.default_reward_positions`) that got no reward are
given `feedback.default_reward`; with sum/max aggregation, each rewarded item's aggregate
is learned now. Entries go to the reward stream like any reward, so the learner's
exactly-once rule covers them (closing twice after a crash learns nothing twice).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from banditrec.config import Config
from serving.learner import Learner
from serving.records import EARLIEST, Decision, RewardEntry
from store import Store

log = logging.getLogger(__name__)


class LearningDeps(Protocol):
    """What closing decisions needs: a `Service`, or the separate learner's `LearnerProcess`."""

    config: Config
    store: Store
    learner: Learner
    clock: Any  # () -> unix seconds


def close_due(service: LearningDeps, now: float | None = None, batch: int = 1000, budget_s: float = 2.0) -> int:
    """Close the decisions that are due (batches until none is left or `budget_s` is spent);
    returns how many reward entries were appended."""
    now = service.clock() if now is None else now
    appended, started = 0, time.monotonic()
    while True:
        due = service.store.due_decisions(now, batch)
        entries = []
        for event_id, (decision, acked, seen, aggregates) in zip(due, service.store.closing_states(due)):
            if decision is not None:
                entries += _entries(service, event_id, decision, acked, seen, aggregates, now)
            else:
                log.warning("decision %s expired before it was closed: its default rewards are lost", event_id)
        if entries:  # recorded first, then marked closed: a crash in between closes twice (harmless)
            service.store.append_rewards(entries, service.config.feedback.stream_maxlen)
        service.store.close_decisions(due)
        appended += len(entries)
        if len(due) < batch or time.monotonic() - started > budget_s:
            break
    if appended:
        service.learner.catch_up()
    return appended


def _entries(service, event_id, stored, acked, seen, aggregates, now) -> list[dict]:
    cfg = service.config.feedback
    decision = Decision.from_json(stored)
    items = decision.items
    entries = []
    if decision.aggregation != EARLIEST:
        entries += [(item_id, value, "final") for item_id, value in aggregates.items() if item_id in items]
    if seen:
        targets = [i for i in items if i in seen]
    else:
        targets = sorted(items, key=lambda i: items[i][0])[: cfg.default_reward_positions]
    rewarded = acked | set(aggregates)
    entries += [(item_id, cfg.default_reward, "default") for item_id in targets if item_id not in rewarded]
    return [RewardEntry.of(kind, event_id, item_id, reward, decision, now).to_json()
            for item_id, reward, kind in entries]
