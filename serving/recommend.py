"""`POST /recommend`: retrieve, filter, score, draw the slate, log the decision."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

import numpy as np

from banditrec.errors import Conflict
from bandit.features import action_line, shared_line
from serving.schema import parse_recommend
from serving.service import Service
from store.redis_store import StoreError

log = logging.getLogger(__name__)


def decision_rng(event_id: str) -> np.random.Generator:
    """The decision's randomness, seeded by its event_id, so it can be replayed from the log."""
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little"))


def recommend(service: Service, body) -> dict:
    cfg = service.config
    req = parse_recommend(body, cfg.server.max_k)
    now = time.time()
    event_id = req.event_id or uuid.uuid4().hex
    degraded = False

    # user state (an outage degrades: serve popularity from the in-process cache)
    try:
        service.sync_catalog()
        user = service.store.get_user(req.user_id)
    except StoreError as exc:
        log.warning("user state unavailable, serving degraded: %s", exc)
        user, degraded = None, True

    # candidates
    vector = service.user_vector(user)
    if vector is not None:
        rows, sims = service.catalog.search(vector, cfg.retrieval.n_candidates, cfg.retrieval.fresh_candidates)
        path = "personalized"
    else:
        rows = _popular_candidates(service, cfg.retrieval.n_candidates, cfg.retrieval.fresh_candidates)
        sims = None
        path = "cold_start"

    # filter: request exclusions (stock and deletions are filtered by the catalog)
    if req.exclude:
        keep = np.fromiter((service.catalog.ids[r] not in req.exclude for r in rows), dtype=bool, count=len(rows))
        rows = rows[keep]
        sims = sims[keep] if sims is not None else None

    # score
    shared = shared_line(user, req.context)
    lines = service.catalog.lines
    actions = [action_line(lines[r], None if sims is None else float(s))
               for r, s in zip(rows, sims if sims is not None else [None] * len(rows))]
    scores = service.model.predict(shared, actions)

    # slate
    slate = service.strategy.choose_slate(scores, req.k, decision_rng(event_id))
    fresh_after = now - cfg.fresh.max_age_s
    published = service.catalog.published_at(rows) if len(rows) else np.zeros(0)
    items, logged = [], {}
    for position, choice in enumerate(slate, start=1):
        item_id = service.catalog.ids[rows[choice.index]]
        items.append({"item_id": item_id, "position": position, "score": round(float(scores[choice.index]), 6) + 0.0,
                      "probability": choice.probability, "explored": choice.explored,
                      "fresh": bool(published[choice.index] >= fresh_after)})
        logged[item_id] = [position, choice.probability, actions[choice.index]]

    # decision log: what learning needs when a reward arrives
    version = service.learner.version
    decision = {"ts": now, "user_id": req.user_id, "shared": shared, "version": version,
                "strategy": path, "items": logged}
    ttl = cfg.feedback.reward_wait_s + cfg.feedback.expired_grace_s
    try:
        if not service.store.put_decision(event_id, decision, ttl):
            raise Conflict(f"event_id {event_id!r} was already used for another decision")
    except StoreError as exc:
        log.warning("decision %s not logged, feedback for it will be refused: %s", event_id, exc)
        degraded = True

    return {"event_id": event_id, "model_version": version, "arm": "personalized",
            "strategy": "degraded" if degraded else path, "items": items}


def _popular_candidates(service: Service, n: int, n_fresh: int) -> np.ndarray:
    """Popular items (cached), then the newest items; without history, only the newest."""
    try:
        popular = service.refresh_popular()
    except StoreError:
        popular = service.popular_rows  # the in-process copy
    popular = popular[service.catalog.available(popular)][:n] if len(popular) else popular
    newest = service.catalog.newest(n_fresh + max(0, n - len(popular)))
    rows = np.concatenate([popular, newest]) if len(popular) else newest
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)]
