"""Azure Personalizer's default learning policy, reproduced with Vowpal Wabbit:
`--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::`.

Personalizer ranked at most 50 actions sent by the client and learned from the reward of
the one it chose; it had no retrieval. The simulated client sends the 30 most popular
available items and 20 random ones. The first position is drawn from VW's PMF; the rest
follow in PMF order, which is how Personalizer's ranking looked: epsilon-greedy gives every
non-greedy action the same probability, so positions 2..k keep the client's order (here:
popularity). Only the first position's reward is learned, as in Personalizer. At k > 1 this
baseline is therefore mostly popularity with one learned slot; compare at k = 1 (`small`).
"""

from __future__ import annotations

import numpy as np

from bandit.features import item_line, shared_line
from bandit.vw import VWExplorer
from simulations.policies.baselines import Popularity

PERSONALIZER_ARGS = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q :: --quiet"


class Personalizer(Popularity):
    name = "azure"

    def setup(self, world, seed, workdir):
        super().setup(world, seed, workdir)
        self.vw = VWExplorer(PERSONALIZER_ARGS)
        self.rng = np.random.default_rng([seed, 5])
        self.lines = {}

    def _line(self, item: int) -> str:
        line = self.lines.get(item)
        if line is None:
            line = self.lines[item] = item_line(self.world.truth.items[item])
        return line

    def recommend(self, user, context, k, now):
        _, popular = super().recommend(user, context, 30, now)
        rest = np.setdiff1d(np.flatnonzero(self.world.available), popular)
        extra = self.rng.choice(rest, size=min(20, len(rest)), replace=False).tolist() if len(rest) else []
        actions = popular + extra
        if not actions:
            return None, []
        shared = shared_line(dict(self.world.truth.users[user]), context)
        lines = [self._line(i) for i in actions]
        pmf = self.vw.pmf(shared, lines)
        first = int(self.rng.choice(len(actions), p=pmf))
        order = [first] + [i for i in np.argsort(-pmf, kind="stable") if i != first][: k - 1]
        return (shared, lines, first, float(pmf[first])), [actions[i] for i in order]

    def reward(self, handle, item, position, reward, now):
        super().reward(handle, item, position, reward, now)
        if handle is not None and position == 0:
            shared, lines, chosen, probability = handle
            self.vw.learn(shared, lines, chosen, reward, probability)

    def close(self):
        self.vw.close()
