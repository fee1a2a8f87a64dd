"""Baselines that need no learning machinery: the oracle, uniform random, popularity."""

from __future__ import annotations

import numpy as np

from simulations.policies.base import Policy


class Oracle(Policy):
    """Knows the truth: the best available slate. Its regret is 0 by definition."""

    name = "oracle"

    def recommend(self, user, context, k, now):
        return None, self.world.oracle(user, context, k, self.world.current_round)[0]


class Random(Policy):
    """k available items, uniformly at random."""

    name = "random"

    def setup(self, world, seed, workdir):
        super().setup(world, seed, workdir)
        self.rng = np.random.default_rng([seed, 3])

    def recommend(self, user, context, k, now):
        rows = np.flatnonzero(self.allowed(user))
        return None, self.rng.choice(rows, size=min(k, len(rows)), replace=False).tolist()


class Popularity(Policy):
    """The most engaged-with available items (history, then clicks as they come), for everyone."""

    name = "popularity"

    def setup(self, world, seed, workdir):
        super().setup(world, seed, workdir)
        weights = {"view": 1.0, "click": 3.0, "add_to_cart": 4.0, "purchase": 6.0}
        self.counts = np.zeros(len(world.truth.items))
        for _, item_id, kind, _ in world.initial_log:
            self.counts[int(item_id[1:])] += weights[kind]

    def recommend(self, user, context, k, now):
        score = np.where(self.allowed(user), self.counts, -np.inf)
        top = np.argsort(-score, kind="stable")[:k]
        return None, [int(i) for i in top if np.isfinite(score[i])]

    def reward(self, handle, item, position, reward, now):
        self.counts[item] += 3.0 * reward
