"""Bootstrap Thompson sampling, as VW's `--bag`: B replicas of the reward model, each trained
on Poisson(1)-reweighted updates; each slate position draws one replica and takes its best.

Only the mean model scores every candidate; the replicas score its top m (one short VW
pass each instead of B full ones). A position's probability for an item is exact:
(1 - epsilon) x (share of replicas whose best remaining item it is) + epsilon / n, where
the epsilon floor keeps every candidate possible (for off-policy evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.strategies.base import Scores, Strategy, argmax_first
from bandit.strategies.mixture import Rankings, order
from banditrec.checks import check_scalar


@dataclass(frozen=True)
class ThompsonConfig:
    replicas: int = 8
    top_m: int = 50
    epsilon: float = 0.02

    def __post_init__(self):
        check_scalar(self.replicas, "exploration.thompson.replicas", int, min=2, max=64)
        check_scalar(self.top_m, "exploration.thompson.top_m", int, min=1, max=10_000)
        check_scalar(self.epsilon, "exploration.thompson.epsilon", float, min=0.0, max=1.0)


class Thompson(Strategy):
    """
    >>> s = Thompson(ThompsonConfig(replicas=4, epsilon=0.0))
    >>> replicas = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    >>> probs, best = s.distribution(Scores(np.array([0.8, 0.4]), replicas))
    >>> [float(p) for p in probs], best
    ([0.75, 0.25], 0)
    """

    name = "thompson"
    Config = ThompsonConfig

    @property
    def replicas(self) -> int:
        return self.config.replicas

    @property
    def top_m(self) -> int:
        return self.config.top_m

    def distribution(self, scores: Scores):
        n = len(scores)
        best = argmax_first(scores.mean)
        probs = np.full(n, self.config.epsilon / n)
        columns = np.flatnonzero(np.isfinite(scores.replicas).all(axis=0)) if scores.replicas is not None else []
        if not len(columns):
            probs[best] += 1.0 - self.config.epsilon  # no replica scored what remains: the mean decides
            return probs, best
        winners = columns[np.argmax(scores.replicas[:, columns], axis=1)]  # each replica's best remaining
        share = np.bincount(winners, minlength=n) / len(winners)
        return np.minimum(probs + (1.0 - self.config.epsilon) * share, 1.0), best

    def rankings(self, scores: Scores) -> Rankings:
        """One ranking per replica over the candidates every replica scored; when those are
        placed, the mean's best takes the replicas' mass (as `distribution` does)."""
        by_mean = order(scores.mean)
        if scores.replicas is None:
            return Rankings(self.config.epsilon, by_mean, [], by_mean)
        columns = np.flatnonzero(np.isfinite(scores.replicas).all(axis=0))
        orders = [order(replica, columns) for replica in scores.replicas] if len(columns) else []
        return Rankings(self.config.epsilon, by_mean, orders, by_mean)
