"""Score, the second step of a decision: the request's shared features (profile, tastes,
context, live session) and each candidate's action line (cached item features + similarity,
session similarity, popularity and quality now), scored by the mean model and, for the
strategies that use them, the bootstrap replicas (`bandit.scoring.score`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.features import action_lines, shared_line
from bandit.scoring import score
from bandit.strategies import Scores
from bandit.vw import Replicas
from serving.candidates import Candidates
from serving.ranking import Ranking
from serving.stages import NO_LAPS, Laps


@dataclass(frozen=True)
class Scored:
    shared: str
    actions: list[str]   # per candidate, in the candidates' order
    scores: Scores


def features(ranking: Ranking, found: Candidates, *, user: dict, context: dict, recent: dict,
             session: np.ndarray | None) -> tuple[str, list[str]]:
    """The shared line and the candidates' action lines."""
    catalog, rows = ranking.catalog, found.rows
    shared = shared_line(user, context, recent)
    live = catalog.vectors(rows) @ session if session is not None and len(rows) else None
    ids = found.item_ids(catalog)
    pops, quality = (ranking.popular.feature(ids), ranking.popular.quality(ids, rows, catalog)) if ids \
        else (None, None)
    return shared, action_lines(catalog.lines, rows, found.sims, live, pops, quality)


def score_candidates(ranking: Ranking, found: Candidates, *, user: dict, context: dict, recent: dict,
                     session: np.ndarray | None, laps: Laps = NO_LAPS) -> Scored:
    shared, actions = features(ranking, found, user=user, context=context, recent=recent, session=session)
    laps("features")
    strategy, replicas = ranking.strategy, ranking.replicas
    if replicas is not None and len(replicas) > strategy.replicas:  # kept for an exploration canary that needs more
        replicas = Replicas(replicas.models[: strategy.replicas]) if strategy.replicas else None
    scores = score(ranking.model, replicas, shared, actions, strategy.top_m, lap=laps)
    return Scored(shared, actions, scores)
