"""Closing decisions whose reward wait is over: default rewards and aggregated rewards.

For each decision past `feedback.reward_wait_s`: the items the client marked as seen (or,
without such marks, the top `feedback.default_reward_positions`) that got no reward are
given `feedback.default_reward`; with sum/max aggregation, each rewarded item's aggregate
is learned now. Entries go to the reward stream like any reward, so the learner's
exactly-once rule covers them (closing twice after a crash learns nothing twice).
"""

from __future__ import annotations

import time

from serving.service import Service


def close_due(service: Service, now: float | None = None, batch: int = 1000) -> int:
    """Close the decisions that are due; returns how many reward entries were appended."""
    cfg = service.config.feedback
    now = time.time() if now is None else now
    appended = 0
    for event_id in service.store.due_decisions(now, batch):
        decision, acked, seen, aggregates = service.store.closing_state(event_id)
        if decision is not None:
            appended += _close(service, event_id, decision, acked, seen, aggregates, now)
        service.store.close_decision(event_id)
    if appended:
        service.learner.catch_up()
    return appended


def _close(service, event_id, decision, acked, seen, aggregates, now) -> int:
    cfg = service.config.feedback
    items = decision["items"]
    entries = []
    if cfg.aggregation != "earliest":
        entries += [(item_id, value, "final") for item_id, value in aggregates.items() if item_id in items]
    if seen:
        targets = [i for i in items if i in seen]
    else:
        targets = sorted(items, key=lambda i: items[i][0])[: cfg.default_reward_positions]
    rewarded = acked | set(aggregates)
    entries += [(item_id, cfg.default_reward, "default") for item_id in targets if item_id not in rewarded]
    for item_id, reward, kind in entries:
        position, probability, action = items[item_id]
        service.store.append_reward({"kind": kind, "event_id": event_id, "item_id": item_id, "reward": reward,
                                     "p": probability, "position": position, "shared": decision["shared"],
                                     "action": action, "decision_ts": decision["ts"], "ts": now,
                                     "version": decision["version"]}, cfg.stream_maxlen)
    return len(entries)
