"""Epsilon-greedy: the best remaining candidate with 1 - epsilon, a uniform draw with epsilon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.strategies.base import Scores, Strategy, argmax_first
from bandit.strategies.mixture import Rankings, order
from banditrec.checks import check_scalar


@dataclass(frozen=True)
class EpsilonGreedyConfig:
    epsilon: float = 0.1

    def __post_init__(self):
        check_scalar(self.epsilon, "exploration.epsilon_greedy.epsilon", float, min=0.0, max=1.0)


class EpsilonGreedy(Strategy):
    """Each position: p(i) = epsilon / n + (1 - epsilon) * [i is the exploit choice].

    >>> s = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.2))
    >>> probs, best = s.distribution(Scores(np.array([0.1, 0.5, 0.3, 0.2])))
    >>> best, [round(float(p), 2) for p in probs]
    (1, [0.05, 0.85, 0.05, 0.05])
    """

    name = "epsilon_greedy"
    Config = EpsilonGreedyConfig

    def distribution(self, scores: Scores):
        n = len(scores)
        best = argmax_first(scores.mean)
        probs = np.full(n, self.config.epsilon / n)
        probs[best] += 1.0 - self.config.epsilon  # exploit
        return probs, best

    def rankings(self, scores: Scores) -> Rankings:
        by_mean = order(scores.mean)
        return Rankings(self.config.epsilon, by_mean, [by_mean], by_mean)
