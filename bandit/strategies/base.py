"""The strategy contract: a distribution over the remaining candidates, one position at a time.

A strategy sees predicted rewards (higher is better) for the candidates still available
and returns a probability for each of them plus the index it would exploit. The slate is
drawn position by position, so the probability logged for a position is exact: the
chance of that item given the items placed above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Choice:
    """One slate position: which candidate, with what probability, and whether it explored."""

    index: int
    probability: float
    explored: bool


class Strategy(ABC):
    """Base class; subclasses set `name` and `Config` and implement `distribution`."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config):
        self.config = config

    @abstractmethod
    def distribution(self, scores: np.ndarray) -> tuple[np.ndarray, int]:
        """Probabilities over `scores` (summing to 1) and the index of the exploit choice."""

    def choose_slate(self, scores: np.ndarray, k: int, rng: np.random.Generator,
                     groups: np.ndarray | None = None, max_per_group: int = 0) -> list[Choice]:
        """Draw up to k distinct candidates, each from the remaining ones. With `groups` and
        `max_per_group` > 0, a group that has filled its quota leaves the remaining set, so
        every position's distribution is over the candidates it could really show."""
        scores = np.asarray(scores, dtype=np.float64)
        remaining = np.arange(len(scores))
        slate = []
        while len(slate) < k and len(remaining):
            probs, exploit = self.distribution(scores[remaining])
            pick = _sample(probs, rng)
            chosen = int(remaining[pick])
            slate.append(Choice(chosen, float(probs[pick]), pick != exploit))
            remaining = np.delete(remaining, pick)
            if groups is not None and max_per_group > 0:
                group = groups[chosen]
                if sum(groups[c.index] == group for c in slate) >= max_per_group:
                    remaining = remaining[groups[remaining] != group]
        return slate


def _sample(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw; never returns an index whose probability is 0."""
    cdf = np.cumsum(probs)
    pick = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    pick = min(pick, len(probs) - 1)
    while probs[pick] <= 0.0:  # only reachable through float round-off at the top end
        pick -= 1
    return pick


def argmax_first(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the earliest (retrieval order)."""
    return int(np.argmax(scores))
