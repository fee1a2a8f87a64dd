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
from serving.canary import experiment_of
from serving.experiment import TREATMENT
from serving.records import EARLIEST, Decision, RewardEntry
from serving.schema import parse_feedback
from serving.service import Service
from store import StoreError

log = logging.getLogger(__name__)


def feedback(service: Service, body) -> dict:
    cfg = service.config.feedback
    req = parse_feedback(body, cfg.reward_min, cfg.reward_max)
    bind_event(req.event_id)
    stored, acked = service.store.feedback_state(req.event_id, req.item_id or "")
    if stored is None:
        raise NotFound(f"event_id {req.event_id!r} is unknown (never issued, or expired more than "
                       f"{cfg.expired_grace_s:g} s ago)")
    decision = Decision.from_json(stored)
    for item_id in (*req.seen, *([req.item_id] if req.item_id else [])):
        if item_id not in decision.items:
            raise InvalidRequest(f"item_id {item_id!r} was not in the slate of event {req.event_id!r}")
    if decision.test:  # test traffic: acknowledged, never recorded, counted or learned
        return {"status": "accepted", "test": True,
                **({"duplicate": False} if req.item_id is not None else {"seen": len(set(req.seen))})}
    ttl = cfg.reward_wait_s + cfg.expired_grace_s
    if req.item_id is None:
        service.store.mark_seen(req.event_id, list(req.seen), ttl)
        return {"status": "accepted", "seen": len(set(req.seen))}
    aggregation = decision.aggregation  # the mode the decision was made under
    if acked is not None and aggregation == EARLIEST:  # a retry, even one after the wait
        return {"status": "accepted", "duplicate": True}
    age = service.clock() - decision.ts
    if age > cfg.reward_wait_s:
        raise Gone(f"event {req.event_id!r} is {age:.0f} s old, rewards are accepted for {cfg.reward_wait_s:g} s")
    if req.seen:
        service.store.mark_seen(req.event_id, list(req.seen), ttl)

    entry = RewardEntry.of("reward", req.event_id, req.item_id, req.reward, decision, service.clock())
    stream_id = service.store.append_reward(entry.to_json(), cfg.stream_maxlen)  # durable before we answer
    # folded into its aggregate, acknowledged, and (a click) told whether it is the pair's first: one round trip
    first = service.store.mark_acked(req.event_id, req.item_id, stream_id, ttl, click=req.reward > 0,
                                     aggregate=None if aggregation == EARLIEST else (req.reward, aggregation))
    if first:  # a click of the decision's arm, counted once however many rewards and retries come
        arms = [(decision.experiment or service.config.experiment.salt, decision.arm or TREATMENT)]
        if decision.canary:  # and in the canary's comparison
            arms.append((experiment_of(decision.canary[0]), decision.canary[1]))
        try:  # and the item's live quality, at once
            service.store.count_click(arms, {"clicks": 1, "reward": req.reward}, req.item_id,
                                      decision.items[req.item_id][0], user_id=decision.user_id or None,
                                      attribution_ttl_s=cfg.attribution_s)
        except StoreError as exc:
            log.warning("reward %s recorded, experiment and live quality counters not updated: %s", stream_id, exc)
    if service.learns and aggregation == EARLIEST:  # else the learner process learns it; under sum or max
        # the reward is learned with its aggregate when the decision closes (`serving.rewards`), not now
        try:
            service.learner.catch_up(max_entries=100)  # bounded: a backlog is the background task's job
        except Exception:  # recorded already: a background task learns it later; the client gets its 200
            log.exception("reward %s recorded, learning deferred", stream_id)
    return {"status": "accepted", "duplicate": acked is not None}
