"""One decision: candidates -> filters -> VW scores -> a slate drawn position by position.

`decide` is pure with respect to Redis (the caller fetched the user state and logs the
result), so the request path, the pre-generated slates and the simulator share it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bandit.features import action_line, shared_line
from retrieval.catalog import Catalog
from serving import candidates
from serving.filters import allowed
from serving.userstate import query_vector, realtime_features


@dataclass
class Slate:
    """A decided slate: which path served, the shared features, and per position
    (item_id, score, probability, explored, fresh, action features)."""

    path: str
    shared: str
    items: list[dict]

    def to_json(self) -> dict:
        return {"path": self.path, "shared": self.shared, "items": self.items}

    @classmethod
    def from_json(cls, data: dict) -> "Slate":
        return cls(data["path"], data["shared"], data["items"])


def decision_rng(event_id: str) -> np.random.Generator:
    """The decision's randomness, seeded by its event_id, so it can be replayed from the log."""
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little"))


def decide(service, catalog: Catalog, *, user_id: str, state: dict | None, context: dict, k: int,
           exclude: frozenset, now: float, event_id: str) -> Slate:
    cfg = service.config
    profile = dict(state["profile"]) if state else {}
    n = state["n"] if state else 0

    # candidates: personal from n interactions on (and with a vector), else popularity
    query = query_vector(state, catalog, now, cfg.realtime, cfg.embedding.event_weights)
    if query is not None and n >= cfg.cold_start.min_interactions:
        rows, sims = candidates.personal(catalog, query, cfg)
        path = "personalized"
    else:
        recent = realtime_features(state, now, cfg.realtime)
        rows = candidates.popular(catalog, service.popular, profile, cfg, recent.get("cats", []))
        sims, path = None, "cold_start"

    # filter before scoring
    keep = allowed(catalog, rows, exclude=exclude, seen=state["seen"] if state else set(), context=context,
                   cfg=cfg.filters)
    rows = rows[keep]
    sims = sims[keep] if sims is not None else None

    # score
    user = {**profile, "taste": state["taste"] if state else []}
    shared = shared_line(user, context, realtime_features(state, now, cfg.realtime))
    lines = catalog.lines
    if sims is None:
        actions = [lines[r] for r in rows]
    else:
        actions = [action_line(lines[r], float(s)) for r, s in zip(rows, sims)]
    scores = service.model.predict(shared, actions)

    # slate
    groups = catalog.category_codes(rows) if cfg.filters.max_per_category else None
    slate = service.strategy.choose_slate(scores, k, decision_rng(event_id), groups, cfg.filters.max_per_category)
    fresh_after = now - cfg.fresh.max_age_s
    published = catalog.published_at(rows) if len(rows) else np.zeros(0)
    items = [{"item_id": catalog.ids[rows[c.index]], "position": position,
              "score": round(float(scores[c.index]), 6) + 0.0, "probability": c.probability,
              "explored": c.explored, "fresh": bool(published[c.index] >= fresh_after),
              "action": actions[c.index]}
             for position, c in enumerate(slate, start=1)]
    return Slate(path, shared, items)
