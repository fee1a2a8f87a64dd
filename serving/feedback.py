"""`POST /feedback`: join a reward with its decision, record it durably, then learn."""

from __future__ import annotations

import logging
import time

from banditrec.errors import Gone, InvalidRequest, NotFound
from serving.schema import parse_feedback
from serving.service import Service

log = logging.getLogger(__name__)


def feedback(service: Service, body) -> dict:
    cfg = service.config.feedback
    req = parse_feedback(body, cfg.reward_min, cfg.reward_max)
    decision, acked = service.store.feedback_state(req.event_id, req.item_id)
    if decision is None:
        raise NotFound(f"event_id {req.event_id!r} is unknown (never issued, or expired more than "
                       f"{cfg.expired_grace_s:g} s ago)")
    shown = decision["items"].get(req.item_id)
    if shown is None:
        raise InvalidRequest(f"item_id {req.item_id!r} was not in the slate of event {req.event_id!r}")
    if acked is not None:  # a retry of a recorded reward, even one that arrives after the wait
        return {"status": "accepted", "duplicate": True}
    age = time.time() - decision["ts"]
    if age > cfg.reward_wait_s:
        raise Gone(f"event {req.event_id!r} is {age:.0f} s old, rewards are accepted for {cfg.reward_wait_s:g} s")

    position, probability, action = shown
    entry = {"event_id": req.event_id, "item_id": req.item_id, "reward": req.reward, "p": probability,
             "position": position, "shared": decision["shared"], "action": action,
             "decision_ts": decision["ts"], "ts": time.time(), "version": decision["version"]}
    stream_id = service.store.append_reward(entry, cfg.stream_maxlen)  # durable before we answer
    service.store.mark_acked(req.event_id, req.item_id, stream_id, cfg.reward_wait_s + cfg.expired_grace_s)
    try:
        service.learner.catch_up()
    except Exception:  # recorded already: the snapshot thread learns it later; the client gets its 200
        log.exception("reward %s recorded, learning deferred", stream_id)
    return {"status": "accepted", "duplicate": False}
