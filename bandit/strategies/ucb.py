"""UCB over the bootstrap replicas: mean + c x (spread of the replicas), best first.

Deterministic: every choice is logged with probability 1, so traffic served by `ucb`
cannot be evaluated off-policy (no other item had a chance). Use it knowingly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.strategies.base import Scores, Strategy, argmax_first
from banditrec.checks import check_scalar


@dataclass(frozen=True)
class UCBConfig:
    replicas: int = 8
    top_m: int = 50
    c: float = 1.0

    def __post_init__(self):
        check_scalar(self.replicas, "exploration.ucb.replicas", int, min=2, max=64)
        check_scalar(self.top_m, "exploration.ucb.top_m", int, min=1, max=10_000)
        check_scalar(self.c, "exploration.ucb.c", float, min=0.0)


class UCB(Strategy):
    name = "ucb"
    Config = UCBConfig
    randomized = False

    @property
    def replicas(self) -> int:
        return self.config.replicas

    @property
    def top_m(self) -> int:
        return self.config.top_m

    def distribution(self, scores: Scores):
        upper = scores.mean.copy()
        if scores.replicas is not None:
            scored = np.isfinite(scores.replicas).all(axis=0)
            if scored.any():
                upper[scored] += self.config.c * scores.replicas[:, scored].std(axis=0)
        best = argmax_first(upper)
        probs = np.zeros(len(scores))
        probs[best] = 1.0
        return probs, best
