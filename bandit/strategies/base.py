"""The strategy contract: a distribution over the remaining candidates, one position at a time.

A strategy sees predicted rewards (higher is better) for the candidates still available
(`Scores`: the model's mean, and for bootstrap strategies B replica scores) and returns a
probability for each plus the index it would exploit. The base class draws the slate
position by position and applies what every strategy shares: the fresh-item boost, the
guaranteed fresh slots, MMR diversity of the exploit choice, and category caps. Every
one of those changes the distribution before the draw, so the probability logged for a
position is exact: the chance of that item given the items placed above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from bandit.strategies.mixture import Rankings, choose


@dataclass(frozen=True)
class Choice:
    """One slate position: which candidate, with what probability, and whether it explored."""

    index: int
    probability: float
    explored: bool


@dataclass
class Scores:
    """Predicted rewards of the candidates: `mean` (n,), and `replicas` (B, n) for bootstrap
    strategies, -inf where a replica did not score a candidate (outside its top m)."""

    mean: np.ndarray
    replicas: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> "Scores":
        return Scores(self.mean[idx], None if self.replicas is None else self.replicas[:, idx])

    def shifted(self, delta: np.ndarray) -> "Scores":
        return Scores(self.mean + delta, None if self.replicas is None else self.replicas + delta[None, :])

    def __len__(self) -> int:
        return len(self.mean)


@dataclass(frozen=True)
class SlateRules:
    """What the base class applies around any strategy (all off by default)."""

    fresh: np.ndarray | None = None   # bool per candidate: eligible for the boost
    boost: float = 0.0                # share of each position's mass spread over fresh candidates
    fresh_slots: int = 0              # the last positions are drawn among fresh candidates only ...
    groups: np.ndarray | None = None  # category code per candidate
    max_per_group: int = 0
    vectors: np.ndarray | None = None  # unit item vectors, for MMR
    diversity: float = 0.0            # MMR lambda: weight of dissimilarity in the exploit choice
    score_range: float = field(default=1.0)


class Strategy(ABC):
    """Base class; subclasses set `name` and `Config` and implement `distribution`."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: How many bootstrap replicas the strategy needs scored (0: the mean model is enough).
    replicas: ClassVar[int] = 0
    #: Learn with the logged probability as importance weight (False: plain regression).
    importance_weighted: ClassVar[bool] = True
    #: Every candidate has a chance: logged traffic supports off-policy evaluation.
    randomized: ClassVar[bool] = True

    def __init__(self, config):
        self.config = config

    @property
    def top_m(self) -> int:
        """How many of the best candidates (by the mean) the replicas score."""
        return 0

    def at_step(self, n: int) -> "Strategy":
        """The strategy for a model that has learned from `n` rewards (schedules such as
        SquareCB's gamma depend on it); itself when nothing does. Never changes `self`, which
        requests share."""
        return self

    @abstractmethod
    def distribution(self, scores: Scores) -> tuple[np.ndarray, int]:
        """Probabilities over `scores` (summing to 1) and the index of the exploit choice."""

    def rankings(self, scores: Scores) -> Rankings | None:
        """The same distribution as a mixture of rankings (`bandit.strategies.mixture`), for a
        slate drawn in O(1) per position; None when it is not of that form."""
        return None

    def choose_slate(self, scores, k: int, rng: np.random.Generator,
                     rules: SlateRules | None = None) -> tuple[list[Choice], np.ndarray]:
        """Draw up to k distinct candidates, each from the remaining ones (see the module doc).
        Returns the choices and the first position's distribution over all candidates (what
        off-policy evaluation of a one-slot decision needs; zeros when nothing was drawn)."""
        if not isinstance(scores, Scores):
            scores = Scores(np.asarray(scores, dtype=np.float64))
        rules = rules or SlateRules()
        n = len(scores)
        simple = rules.diversity <= 0 and not rules.fresh_slots and (rules.groups is None or rules.max_per_group <= 0)
        mix = self.rankings(scores) if simple and n else None
        if mix is not None:
            first_probs, _ = self.distribution(scores)
            boosted = rules.fresh is not None and rules.boost > 0
            if boosted:
                first_probs = _boost(first_probs, rules.fresh, rules.boost)
            picks = choose(mix, n, k, rng, rules.fresh if boosted else None, rules.boost if boosted else 0.0)
            return [Choice(int(i), float(p), bool(e)) for i, p, e in picks], first_probs
        remaining = np.arange(n)
        slate: list[Choice] = []
        first_probs = np.zeros(n)
        fresh_placed = 0
        while len(slate) < k and len(remaining):
            candidates = remaining
            if rules.fresh is not None and rules.fresh_slots and fresh_placed < rules.fresh_slots \
                    and len(slate) >= k - (rules.fresh_slots - fresh_placed):
                fresh_left = remaining[rules.fresh[remaining]]
                if len(fresh_left):  # a guaranteed fresh slot: drawn among fresh items only
                    candidates = fresh_left
            view = scores.take(candidates)
            if rules.diversity > 0 and slate:
                view = view.shifted(-_redundancy(rules, candidates, slate))
            probs, exploit = self.distribution(view)
            if rules.fresh is not None and rules.boost > 0 and candidates is remaining:
                probs = _boost(probs, rules.fresh[candidates], rules.boost)
            if not slate:
                first_probs[candidates] = probs
            pick = _sample(probs, rng)
            chosen = int(candidates[pick])
            slate.append(Choice(chosen, float(probs[pick]), pick != exploit))
            fresh_placed += int(rules.fresh is not None and rules.fresh[chosen])
            remaining = remaining[remaining != chosen]
            if rules.groups is not None and rules.max_per_group > 0:
                group = rules.groups[chosen]
                if sum(rules.groups[c.index] == group for c in slate) >= rules.max_per_group:
                    remaining = remaining[rules.groups[remaining] != group]
        return slate, first_probs


def _boost(probs: np.ndarray, fresh: np.ndarray, boost: float) -> np.ndarray:
    """Move `boost` of the mass to a uniform draw among the fresh candidates (if any)."""
    count = int(fresh.sum())
    if count == 0:
        return probs
    out = (1.0 - boost) * probs
    out[fresh] += boost / count
    return out


def _redundancy(rules: SlateRules, candidates: np.ndarray, slate: list[Choice]) -> np.ndarray:
    """MMR: lambda x (max cosine to an item already placed), in units of the score range."""
    placed = rules.vectors[[c.index for c in slate]]
    similarity = (rules.vectors[candidates] @ placed.T).max(axis=1)
    return rules.diversity * rules.score_range * np.clip(similarity, 0.0, 1.0)


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
