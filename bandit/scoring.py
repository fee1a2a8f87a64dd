"""Scores for one decision: the mean model on every candidate, and the bootstrap replicas (the
strategies that use them) on the mean's top m only, -inf elsewhere. The request path and the
off-policy replay score the same way."""

from __future__ import annotations

from typing import Callable

import numpy as np

from bandit.strategies.base import Scores
from bandit.vw import Replicas, VWModel


def score(model: VWModel, replicas: Replicas | None, shared: str, actions: list[str], top_m: int = 0,
          lap: Callable[[str], None] | None = None) -> Scores:
    """`lap(stage)`, if given, is called after the mean ("vw_score") and the replicas ("replicas")."""
    scores = Scores(model.predict(shared, actions))
    if lap is not None:
        lap("vw_score")
    if replicas is not None and top_m > 0 and len(actions):
        top = np.argsort(-scores.mean, kind="stable")[:top_m]
        full = np.full((len(replicas), len(actions)), -np.inf)
        full[:, top] = replicas.predict(shared, [actions[i] for i in top])
        scores.replicas = full
        if lap is not None:
            lap("replicas")
    return scores
