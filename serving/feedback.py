"""`POST /feedback`: join a reward with its decision, record it durably, then learn.

With `feedback.aggregation = "earliest"` the first reward of an (event, item) is learned at
once and repeats are acknowledged without learning. With "sum" or "max", every reward is
recorded and folded into the pair's aggregate, which is learned once the reward wait is
over (see `serving/rewards.py`). A body may also (or only) list the items the client saw;
those are the ones that get the default reward if no reward comes.
"""

from __future__ import annotations

import logging

from banditrec.errors import Gone, InvalidRequest, NotFound
from banditrec.logs import bind_event
from serving.experiment import TREATMENT
from serving.schema import parse_feedback
from serving.service import Service
from store import StoreError

log = logging.getLogger(__name__)


def reward_entry(kind: str, event_id: str, item_id: str, reward: float, decision: dict, now: float) -> dict:
    """A reward-stream entry: everything learning needs, as the decision logged it. `kind` is
    "reward" (from a client), "default" (none came in time) or "final" (an aggregate); `agg`
    and `iw` are the decision's aggregation mode and whether its strategy learns with
    importance weights, so a later config change does not reinterpret old decisions."""
    position, probability, action = decision["items"][item_id]
    return {"kind": kind, "event_id": event_id, "item_id": item_id, "reward": reward, "p": probability,
            "position": position, "shared": decision["shared"], "action": action, "decision_ts": decision["ts"],
            "ts": now, "version": decision["version"], "agg": decision.get("agg", "earliest"),
            "iw": decision.get("iw", True)}


def feedback(service: Service, body) -> dict:
    cfg = service.config.feedback
    req = parse_feedback(body, cfg.reward_min, cfg.reward_max)
    bind_event(req.event_id)
    decision, acked = service.store.feedback_state(req.event_id, req.item_id or "")
    if decision is None:
        raise NotFound(f"event_id {req.event_id!r} is unknown (never issued, or expired more than "
                       f"{cfg.expired_grace_s:g} s ago)")
    for item_id in (*req.seen, *([req.item_id] if req.item_id else [])):
        if item_id not in decision["items"]:
            raise InvalidRequest(f"item_id {item_id!r} was not in the slate of event {req.event_id!r}")
    ttl = cfg.reward_wait_s + cfg.expired_grace_s
    if req.item_id is None:
        service.store.mark_seen(req.event_id, list(req.seen), ttl)
        return {"status": "accepted", "seen": len(set(req.seen))}
    aggregation = decision.get("agg", "earliest")  # the mode the decision was made under
    if acked is not None and aggregation == "earliest":  # a retry, even one after the wait
        return {"status": "accepted", "duplicate": True}
    age = service.clock() - decision["ts"]
    if age > cfg.reward_wait_s:
        raise Gone(f"event {req.event_id!r} is {age:.0f} s old, rewards are accepted for {cfg.reward_wait_s:g} s")
    if req.seen:
        service.store.mark_seen(req.event_id, list(req.seen), ttl)

    entry = reward_entry("reward", req.event_id, req.item_id, req.reward, decision, service.clock())
    stream_id = service.store.append_reward(entry, cfg.stream_maxlen)  # durable before we answer
    if aggregation != "earliest":
        service.store.aggregate_reward(req.event_id, req.item_id, req.reward, aggregation, ttl)
    service.store.mark_acked(req.event_id, req.item_id, stream_id, ttl)
    if req.reward > 0:  # a click of the decision's arm, counted once however many rewards and retries come
        try:
            if service.store.first_click(req.event_id, req.item_id, ttl):
                service.store.count_arm(decision.get("exp", service.config.experiment.salt),
                                        decision.get("arm", TREATMENT), {"clicks": 1, "reward": req.reward})
        except StoreError as exc:
            log.warning("reward %s recorded, experiment counters not updated: %s", stream_id, exc)
    if service.learns:  # else the learner process learns it
        try:
            service.learner.catch_up(max_entries=100)  # bounded: a backlog is the background task's job
        except Exception:  # recorded already: a background task learns it later; the client gets its 200
            log.exception("reward %s recorded, learning deferred", stream_id)
    return {"status": "accepted", "duplicate": acked is not None}
