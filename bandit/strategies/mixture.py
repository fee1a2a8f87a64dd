"""The slate draw for strategies whose distribution is a mixture of rankings, in O(1) per position.

Epsilon-greedy, greedy and bootstrap Thompson sampling all give, at each position, candidate
i the probability

    (1 - b) x [epsilon / m + (1 - epsilon) x share(i)] + b x fresh(i) / f

where m candidates remain (f of them fresh), share(i) is the share of R rankings whose best
remaining candidate is i (one ranking, the mean's, for epsilon-greedy; one per bootstrap
replica for Thompson) and b is the fresh boost. The base class computes that vector over
all remaining candidates at every position (~80 us each: 4-5 ms a slate of 50 out of
1000). Here each ranking is sorted once and a pointer walks past the items already placed;
a position draws its component (fresh, uniform, or one ranking's best) and then the item,
and logs the same exact probability. The first position's full distribution (for
off-policy evaluation) is computed once, the base class's way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rankings:
    """A distribution of the form above (without the boost, which the slate rules add).

    `orders`: R arrays of candidate indices, best first; `fallback`: the ranking whose best
    takes the (1 - epsilon) mass once the orders are exhausted (they cover the same
    candidates). `exploit` ranks the strategy's own exploit choice (logged as not explored).
    """

    epsilon: float
    exploit: np.ndarray
    orders: list[np.ndarray]
    fallback: np.ndarray


def order(values: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Indices by value, highest first, ties to the earliest (as `argmax_first` picks)."""
    if among is None:
        return np.argsort(-values, kind="stable")
    return among[np.argsort(-values[among], kind="stable")]


class _Pool:
    """The remaining members of a set of indices below n, with O(1) uniform draws and removals."""

    def __init__(self, members: np.ndarray, n: int):
        self.items = members.tolist()
        if len(self.items) == n:  # everyone: where each is, without a dict of n entries
            self.where = list(range(n))
        else:
            self.where = [-1] * n
            for i, item in enumerate(self.items):
                self.where[item] = i

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, u: float) -> int:
        """The member a uniform draw `u` in [0, 1) picks."""
        return self.items[min(int(u * len(self.items)), len(self.items) - 1)]

    def remove(self, item: int) -> None:
        i = self.where[item]
        if i < 0:
            return
        self.where[item] = -1
        last = self.items.pop()
        if last != item:
            self.items[i] = last
            self.where[last] = i


class _Walk:
    """The first remaining index of a ranking (a pointer that only moves forward). `alive` has
    one more entry than there are candidates, always true: the end of every ranking."""

    def __init__(self, ranking: np.ndarray, end: int):
        self.ranking = [*ranking.tolist(), end]
        self.end = end
        self.at = 0

    def best(self, alive: list[bool]) -> int | None:
        ranking, at = self.ranking, self.at
        while not alive[ranking[at]]:
            at += 1
        self.at = at
        return None if ranking[at] == self.end else ranking[at]


def choose(rankings: Rankings, n: int, k: int, rng: np.random.Generator, fresh: np.ndarray | None,
           boost: float) -> list[tuple[int, float, bool]]:
    """Draw up to k distinct candidates of n; returns [(index, probability, explored)]."""
    alive = [True] * (n + 1)  # and the rankings' end
    everyone = _Pool(np.arange(n), n)
    fresh_pool = _Pool(np.flatnonzero(fresh), n) if fresh is not None and boost > 0 else None
    exploit = _Walk(rankings.exploit, n)
    walks = [_Walk(o, n) for o in rankings.orders]
    fallback = _Walk(rankings.fallback, n)
    eps, n_rankings = rankings.epsilon, len(walks)
    # Two uniforms a position, drawn at once: which component, then which item in it (a numpy
    # draw per call cost ~0.1 ms a slate of 50).
    draws = rng.random(2 * min(k, n)).tolist()
    out = []
    # Each ranking's best remaining, and the rankings whose best each item is: a ranking's
    # best moves only when it is placed, so a position advances only those rankings.
    ranked = [w.best(alive) for w in walks]
    holding: dict[int, list[int]] = {}
    for r, best in enumerate(ranked):
        holding.setdefault(best, []).append(r)
    mine = exploit.best(alive)
    while len(out) < k and len(everyone):
        m = len(everyone)
        bests = ranked
        if not bests or bests[0] is None:  # the orders cover the same candidates: all exhausted
            bests = [fallback.best(alive)] * max(1, n_rankings)
        b = boost if fresh_pool is not None and len(fresh_pool) else 0.0
        u, v = draws[2 * len(out)], draws[2 * len(out) + 1]
        if u < b:
            pick = fresh_pool.draw(v)
        elif u < b + (1.0 - b) * eps:
            pick = everyone.draw(v)
        else:
            pick = bests[min(int(v * len(bests)), len(bests) - 1)]
        share = bests.count(pick) / len(bests)
        p = min(eps / m + (1.0 - eps) * share, 1.0)
        if b > 0:
            p = (1.0 - b) * p + (b / len(fresh_pool) if fresh[pick] else 0.0)
        out.append((pick, p, pick != mine))
        alive[pick] = False
        if pick == mine:
            mine = exploit.best(alive)
        for r in holding.pop(pick, ()):
            best = ranked[r] = walks[r].best(alive)
            holding.setdefault(best, []).append(r)
        everyone.remove(pick)
        if fresh_pool is not None:
            fresh_pool.remove(pick)
    return out
