"""One decision: candidates -> filters -> VW scores -> a slate drawn position by position.

`decide` is pure with respect to writes (the caller fetched the user state and logs the
result), so the request path, the pre-generated slates and the simulator share it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bandit.features import action_lines, shared_line
from bandit.scoring import score
from bandit.strategies import Choice, Scores, SlateRules
from retrieval.catalog import Catalog
from serving import candidates
from serving.filters import allowed
from serving.stages import NO_LAPS, Laps
from serving.userstate import query_vector, realtime_features, session_vector
from store import StoreError


@dataclass
class Slate:
    """A decided slate: which path served, the shared features, and per position
    (item_id, score, probability, explored, fresh, action features); `candidates` is the
    first position's distribution for the decision log: [item_id, similarity, probability]."""

    path: str
    shared: str
    items: list[dict]
    candidates: list = None
    version: int | None = None  # the model version that scored it

    def to_json(self) -> dict:
        return {"path": self.path, "shared": self.shared, "items": self.items}

    @classmethod
    def from_json(cls, data: dict) -> "Slate":
        return cls(data["path"], data["shared"], data["items"])


def decision_rng(event_id: str) -> np.random.Generator:
    """The decision's randomness, seeded by its event_id, so it can be replayed from the log."""
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little"))


def decide(service, catalog: Catalog, *, user_id: str, state: dict | None, context: dict, k: int,
           exclude: frozenset, now: float, event_id: str, baseline: tuple[str, ...] | None = None,
           explain: bool = False, holdout: bool = False, laps: Laps = NO_LAPS) -> Slate:
    cfg = service.config
    profile = dict(state["profile"]) if state else {}
    n = state["n"] if state else 0
    recent = realtime_features(state, now, cfg.realtime)

    # candidates: personal from n interactions on (and with a vector), else popularity
    session = session_vector(state, catalog, now, cfg.realtime, cfg.embedding.event_weights)
    query = query_vector(state, catalog, now, cfg.realtime, cfg.embedding.event_weights, session=session)
    laps("query_vector")
    apprentice = cfg.learning.mode == "apprentice" and not holdout
    if holdout:  # the baseline served as it is: the holdout's own popularity list
        rows, sims, path = candidates.holdout(catalog, service.popular, cfg), None, "popularity"
    elif apprentice:  # the client's order (else popularity), served as it is
        rows = catalog.rows_for(baseline) if baseline else candidates.popular(catalog, service.popular, profile, cfg)
        rows = rows[catalog.available(rows)] if len(rows) else rows
        sims, path = None, "apprentice"
    elif query is not None and n >= cfg.cold_start.min_interactions:
        rows, sims = candidates.personal(catalog, query, cfg, service.popular)
        path = "personalized"
    else:
        rows = candidates.popular(catalog, service.popular, profile, cfg, recent.get("cats", []))
        sims, path = None, "cold_start"
    laps("retrieval")

    # filter before scoring
    keep = allowed(catalog, rows, exclude=exclude, seen=state["seen"] if state else set(), context=context,
                   cfg=cfg.filters)
    rows = rows[keep]
    sims = sims[keep] if sims is not None else None
    laps("filter")

    # score: the mean model on every candidate, bootstrap replicas on its top m
    user = {**profile, "taste": state["taste"] if state else []}
    if cfg.model.user_id_feature:
        user["user_id"] = user_id
    shared = shared_line(user, context, recent)
    live = catalog.vectors(rows) @ session if session is not None and len(rows) else None
    ids = [catalog.ids[r] for r in rows.tolist()]
    pops, quality = (service.popular.feature(ids), service.popular.quality(ids)) if ids else (None, None)
    actions = action_lines(catalog.lines, rows, sims, live, pops, quality)
    laps("features")
    strategy, learner = service.strategy, service.learner
    model, bootstrap, version = learner.model, learner.replicas, learner.version  # read once: adopt() swaps them
    scores = score(model, bootstrap if strategy.replicas else None, shared, actions, strategy.top_m, lap=laps)

    # slate
    published = catalog.published_at(rows) if len(rows) else np.zeros(0)
    fresh = _fresh(service, catalog, rows, published, now)
    if apprentice or holdout:  # a deterministic order: each item had probability 1
        slate = [Choice(i, 1.0, False) for i in range(min(k, len(rows)))]
        if apprentice:
            service.apprentice_match(bool(len(rows)) and int(np.argmax(scores.mean)) == 0)
        first_probs = np.eye(1, len(rows), 0).ravel() if len(rows) else np.zeros(0)
    else:
        strategy.learned(learner.total)
        slate, first_probs = strategy.choose_slate(scores, k, decision_rng(event_id),
                                                   rules=_rules(cfg, catalog, rows, fresh, scores))
    items = [{"item_id": catalog.ids[rows[c.index]], "position": position,
              "score": round(float(scores.mean[c.index]), 6) + 0.0, "probability": c.probability,
              "explored": c.explored, "fresh": bool(fresh[c.index]), "action": actions[c.index]}
             for position, c in enumerate(slate, start=1)]
    if explain:
        for item in items:
            item["explain"] = model.explain(shared, item["action"])
    laps("slate")
    return Slate(path, shared, items, _logged_candidates(cfg, catalog, rows, sims, first_probs, slate),
                 version)


def _logged_candidates(cfg, catalog: Catalog, rows, sims, probs, slate) -> list | None:
    """The first position's most likely candidates (always with the chosen one)."""
    if not cfg.log.decisions or probs is None or not len(rows):
        return None
    keep = np.argsort(-probs, kind="stable")[: cfg.log.max_candidates]
    if slate and slate[0].index not in keep:
        keep = np.append(keep[:-1], slate[0].index)
    return [[catalog.ids[rows[i]], None if sims is None else round(float(sims[i]), 4), float(probs[i])] for i in keep]


def _fresh(service, catalog: Catalog, rows: np.ndarray, published: np.ndarray, now: float) -> np.ndarray:
    """Young items with few labelled impressions: the ones the boost is for."""
    cfg = service.config.fresh
    young = published >= now - cfg.max_age_s
    if not young.any() or cfg.min_impressions == 0:
        return young & (cfg.min_impressions > 0)
    idx = np.flatnonzero(young)
    try:
        counts = np.asarray(service.store.labelled([catalog.ids[rows[i]] for i in idx]))
    except StoreError:
        counts = np.zeros(len(idx))  # unknown while Redis is away: treat young items as unobserved
    young[idx] = counts < cfg.min_impressions
    return young


def _rules(cfg, catalog: Catalog, rows: np.ndarray, fresh: np.ndarray, scores: Scores) -> SlateRules:
    vectors = None
    if cfg.diversity.lambda_ > 0 and len(rows):
        vectors = np.vstack([catalog.vector(r) for r in rows])
    spread = float(np.ptp(scores.mean)) if len(rows) else 0.0
    return SlateRules(fresh=fresh, boost=cfg.fresh.boost, fresh_slots=cfg.fresh.slots,
                      groups=catalog.category_codes(rows) if cfg.filters.max_per_category else None,
                      max_per_group=cfg.filters.max_per_category, vectors=vectors,
                      diversity=cfg.diversity.lambda_, score_range=max(spread, 1e-3))
