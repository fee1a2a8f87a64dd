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

    def choose_slate(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> list[Choice]:
        """Draw min(k, len(scores)) distinct candidates, each from the remaining ones."""
        scores = np.asarray(scores, dtype=np.float64)
        remaining = np.arange(len(scores))
        slate = []
        for _ in range(min(k, len(scores))):
            probs, exploit = self.distribution(scores[remaining])
            pick = _sample(probs, rng)
            slate.append(Choice(int(remaining[pick]), float(probs[pick]), pick != exploit))
            remaining = np.delete(remaining, pick)
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
