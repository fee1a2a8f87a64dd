"""Score, the second step of a decision: the request's shared features (profile, tastes,
context, live session) and each candidate's action line (cached item features + similarity,
session similarity, popularity and quality now), scored by the mean model and, for the
strategies that use them, the bootstrap replicas (`bandit.scoring.score`).

Scored from the models' copies of their weights instead when they have them (`bandit.linear`:
the same scores, from the catalog's pre-hashed item features, no text per candidate): a
process that serves a snapshot, and one that learns inline (its copies follow every update);
only the shown items' action lines are then written, for learning. Any model without a
readable copy of its weights, or an index version without hashed features, is scored
through VW as before."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.features import action_lines, shared_line
from bandit.linear import ItemFeatures, LinearModel
from bandit.scoring import score
from bandit.strategies import Scores
from bandit.vw import Replicas, line_features
from serving.candidates import Candidates
from serving.ranking import Ranking
from serving.stages import NO_LAPS, Laps


@dataclass(frozen=True)
class Scored:
    shared: str
    actions: "list[str] | Actions"   # per candidate, in the candidates' order
    scores: Scores


class Actions:
    """The candidates' action lines, each written when asked for (the shown ones): the same
    text `features` writes for all of them."""

    def __init__(self, lines, rows: np.ndarray, extras: dict):
        self._lines, self._rows, self._extras = lines, rows, extras

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> str:
        return self.take([i])[0]

    def take(self, positions: list[int]) -> list[str]:
        """The lines of the candidates at `positions`, written in one go."""
        at = np.asarray(positions, dtype=np.int64)
        some = {key: None if values is None else np.asarray(values)[at] for key, values in self._extras.items()}
        return action_lines(self._lines, self._rows[at], **some)


def features(ranking: Ranking, found: Candidates, *, user: dict, context: dict, recent: dict,
             session: np.ndarray | None) -> tuple[str, list[str]]:
    """The shared line and the candidates' action lines."""
    catalog, rows = ranking.catalog, found.rows
    shared = shared_line(user, context, recent)
    live = catalog.vectors(rows) @ session if session is not None and len(rows) else None
    pops, quality = (ranking.popular.feature(None, rows, catalog), ranking.popular.quality(None, rows, catalog)) \
        if len(rows) else (None, None)
    return shared, action_lines(catalog.lines, rows, found.sims, live, pops, quality)


def score_candidates(ranking: Ranking, found: Candidates, *, user: dict, context: dict, recent: dict,
                     session: np.ndarray | None, laps: Laps = NO_LAPS) -> Scored:
    strategy, replicas = ranking.strategy, ranking.replicas
    if replicas is not None and len(replicas) > strategy.replicas:  # kept for an exploration canary that needs more
        replicas = Replicas(replicas.models[: strategy.replicas]) if strategy.replicas else None
    models = [ranking.model, *(replicas.models if replicas is not None and strategy.top_m > 0 else ())]
    linear = [m.synced_linear() for m in models]  # up to date with what they learned; read once for the request
    flat = ranking.catalog.item_features(found.rows) if len(found.rows) and all(
        one is not None for one in linear) else None
    if flat is not None:
        return _direct(ranking, found, linear, ItemFeatures(*flat, len(found.rows)), user=user, context=context,
                       recent=recent, session=session, laps=laps)
    shared, actions = features(ranking, found, user=user, context=context, recent=recent, session=session)
    laps("features")
    scores = score(ranking.model, replicas, shared, actions, strategy.top_m, lap=laps)
    return Scored(shared, actions, scores)


def _direct(ranking: Ranking, found: Candidates, models: list[LinearModel], items: ItemFeatures, *, user: dict,
            context: dict, recent: dict, session: np.ndarray | None, laps: Laps) -> Scored:
    """`score_candidates` from the models' weights (`bandit.linear`), the replicas on the mean's top m."""
    catalog, rows = ranking.catalog, found.rows
    shared = shared_line(user, context, recent)
    popular = ranking.popular
    extras = {"sims": found.sims, "live": catalog.vectors(rows) @ session if session is not None else None,
              "pops": popular.feature(None, rows, catalog), "quality": popular.quality(None, rows, catalog)}
    parsed = line_features(shared)  # hashed once for the mean's design and the replicas'
    design = models[0].design(parsed, items, **extras)
    laps("features")
    scores = Scores(models[0].score(design))
    laps("vw_score")
    if len(models) > 1:
        top = np.argsort(-scores.mean, kind="stable")[: ranking.strategy.top_m]
        some = {key: None if values is None else np.asarray(values)[top] for key, values in extras.items()}
        design = models[0].design(parsed, items.take(top), **some)
        scores.replicas = np.full((len(models) - 1, len(rows)), -np.inf)
        scores.replicas[:, top] = np.vstack([m.score(design) for m in models[1:]])
        laps("replicas")
    return Scored(shared, Actions(catalog.lines, rows, extras), scores)
