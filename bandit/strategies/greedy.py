"""Greedy: always the best remaining candidate. The no-exploration baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.strategies.base import Scores, Strategy, argmax_first
from bandit.strategies.mixture import Rankings, order


@dataclass(frozen=True)
class GreedyConfig:
    pass


class Greedy(Strategy):
    """Probability 1 on the exploit choice: its traffic cannot be evaluated off-policy."""

    name = "greedy"
    Config = GreedyConfig

    randomized = False

    def distribution(self, scores: Scores):
        best = argmax_first(scores.mean)
        probs = np.zeros(len(scores))
        probs[best] = 1.0
        return probs, best

    def rankings(self, scores: Scores) -> Rankings:
        by_mean = order(scores.mean)
        return Rankings(0.0, by_mean, [by_mean], by_mean)
