"""One decision, in three steps: retrieve (`serving.candidates`: candidates, then what may be
shown) -> score (`serving.score`: features, the mean model and its replicas) -> draw
(`serving.draw`: the slate, position by position, by the exploration strategy).

`decide` and `decide_baseline` read a `Ranking` and write nothing: the caller fetched the
user state and logs the result (and the apprentice's match count), so the request path, the
pre-generated slates and the simulator share them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from bandit.strategies import Strategy
from serving.candidates import retrieve, retrieve_baseline
from serving.draw import draw, in_order
from serving.ranking import Ranking
from serving.records import SlateItem, UserState
from serving.score import Scored, score_candidates
from serving.stages import NO_LAPS, Laps
from serving.userstate import preference_taste, query_vector, realtime_features, session_vector


@dataclass
class Slate:
    """A decided slate: where its candidates came from (`source`: the response's "strategy"),
    the shared features, its items, the first position's distribution for the decision log
    ([item_id, similarity, probability] each), the model version that scored it, in
    apprentice mode whether the model's first choice was the baseline's (`matched`), and the
    exploration strategy that drew it (None for a pre-generated slate: the service's)."""

    source: str
    shared: str
    items: list[SlateItem]
    candidates: list | None = None
    version: int | None = None
    matched: bool | None = None
    strategy: Strategy | type[Strategy] | None = None  # (a pre-generated slate's: its class, by name)

    def to_json(self) -> dict:  # what a pre-generated slate keeps ("path": the stored name of `source`)
        out = {"path": self.source, "shared": self.shared, "items": [item.to_json() for item in self.items]}
        return out if self.strategy is None else {**out, "strategy_name": self.strategy.name}


def decide(ranking: Ranking, state: UserState, *, user_id: str, context: dict, k: int, exclude: frozenset,
           now: float, event_id: str, explain: bool = False, laps: Laps = NO_LAPS) -> Slate:
    """The bandit's slate for a user."""
    cfg = ranking.config
    profile = dict(state.profile)
    recent = realtime_features(state, now, cfg.realtime)
    session = session_vector(state, ranking.catalog, now, cfg.realtime, cfg.embedding.event_weights)
    query = query_vector(state, ranking.catalog, now, cfg.realtime, cfg.embedding.event_weights, session=session)
    laps("query_vector")

    found = retrieve(ranking, state, query, profile=profile, session_categories=recent.get("cats", []),
                     exclude=exclude, context=context, laps=laps)
    laps("filter")
    user = _user(cfg, ranking.catalog, profile, state, user_id)
    scored = score_candidates(ranking, found, user=user, context=context, recent=recent, session=session, laps=laps)
    items, logged = draw(ranking, found, scored, k=k, event_id=event_id, now=now)
    items = _explained(ranking, scored, items) if explain else items
    laps("slate")
    return Slate(found.source, scored.shared, items, logged, ranking.version, strategy=ranking.strategy)


def decide_baseline(ranking: Ranking, state: UserState, *, user_id: str, context: dict, k: int,
                    exclude: frozenset, now: float, holdout: bool, baseline: Sequence[str] | None = None,
                    explain: bool = False, laps: Laps = NO_LAPS) -> Slate:
    """A baseline served as it is, each item with probability 1: the A/B holdout's popularity
    list, or (apprentice mode) the client's `baseline` order, else popularity. The model
    still scores it: the apprentice learns to imitate it, and counts how often it would have
    chosen the same first item."""
    cfg = ranking.config
    profile = dict(state.profile)
    recent = realtime_features(state, now, cfg.realtime)
    session = session_vector(state, ranking.catalog, now, cfg.realtime, cfg.embedding.event_weights)
    laps("query_vector")
    found = retrieve_baseline(ranking, state, holdout=holdout, baseline=baseline, profile=profile, exclude=exclude,
                              context=context, laps=laps)
    laps("filter")
    user = _user(cfg, ranking.catalog, profile, state, user_id)
    scored = score_candidates(ranking, found, user=user, context=context, recent=recent, session=session, laps=laps)
    items, logged = in_order(ranking, found, scored, k=k, now=now)
    items = _explained(ranking, scored, items) if explain else items
    matched = None if holdout else bool(len(found)) and int(np.argmax(scored.scores.mean)) == 0
    laps("slate")
    return Slate(found.source, scored.shared, items, logged, ranking.version, matched, ranking.strategy)


def _user(cfg, catalog, profile: dict, state: UserState, user_id: str) -> dict:
    """The user as the shared features see them: profile, tastes (from the history, else from
    the onboarding preferences), and the id if configured."""
    taste = state.taste or (preference_taste(state.preferences, catalog, cfg.embedding.taste_categories)
                            if state.preferences else ())
    user = {**profile, "taste": list(taste)}
    if cfg.model.user_id_feature:
        user["user_id"] = user_id
    return user


def _explained(ranking: Ranking, scored: Scored, items: list[SlateItem]) -> list[SlateItem]:
    return [replace(item, explain=ranking.model.explain(scored.shared, item.action)) for item in items]
