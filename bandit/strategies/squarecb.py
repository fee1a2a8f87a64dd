"""SquareCB (Foster & Rakhlin 2020): inverse-gap weighting, as VW's `--squarecb`.

Each non-best candidate gets 1 / (n + gamma x gap) with gap = best predicted reward minus
its own, the best gets the rest; gamma = gamma_scale x t^gamma_exponent grows with t, the
number of rewards learned, so exploration fades as the model improves. Like VW, the model
learns from SquareCB traffic without importance weights (plain regression on the shown
items).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np  # noqa: F401 (the doctests use the module's globals)

from bandit.strategies.base import Scores, Strategy, argmax_first
from banditrec.checks import check_scalar


@dataclass(frozen=True)
class SquareCBConfig:
    gamma_scale: float = 10.0
    gamma_exponent: float = 0.5

    def __post_init__(self):
        check_scalar(self.gamma_scale, "exploration.squarecb.gamma_scale", float, min=0.0)
        check_scalar(self.gamma_exponent, "exploration.squarecb.gamma_exponent", float, min=0.0, max=2.0)


class SquareCB(Strategy):
    """
    >>> s = SquareCB(SquareCBConfig(gamma_scale=10.0, gamma_exponent=0.0))
    >>> probs, best = s.distribution(Scores(np.array([1.0, 0.5, 0.0])))
    >>> best, [round(float(p), 4) for p in probs]
    (0, [0.7981, 0.125, 0.0769])
    """

    name = "squarecb"
    Config = SquareCBConfig
    importance_weighted = False

    def __init__(self, config):
        super().__init__(config)
        self.t = 0

    def at_step(self, n: int) -> "SquareCB":
        if n == self.t:
            return self
        strategy = copy.copy(self)
        strategy.t = n
        return strategy

    @property
    def gamma(self) -> float:
        return self.config.gamma_scale * float(self.t) ** self.config.gamma_exponent

    def distribution(self, scores: Scores):
        n = len(scores)
        best = argmax_first(scores.mean)
        gap = scores.mean[best] - scores.mean
        probs = 1.0 / (n + self.gamma * gap)
        probs[best] = 0.0
        probs[best] = max(0.0, 1.0 - probs.sum())
        return probs, best
