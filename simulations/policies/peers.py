"""MABWiser's LinTS and LinUCB (optional: `pip install 'banditrec[peers]'`), one linear model
per item: only the `small` scenario has few enough items for them. Their context is what
banditrec's model sees of a user, as numbers: profile and device one-hot, and the user's
taste (share of their history per category). They start from the same history as
banditrec's warm start (a view is 1 if the user engaged with the item, else 0)."""

from __future__ import annotations

import numpy as np

from banditrec.errors import ConfigError
from retrieval.demo import AGE_GROUPS, DEVICES, LOCATIONS
from simulations.policies.base import Policy


def _context(profile: dict, context: dict, taste: np.ndarray) -> np.ndarray:
    x = np.zeros(len(AGE_GROUPS) + len(LOCATIONS) + len(DEVICES) + len(taste))
    x[len(x) - len(taste):] = taste
    if profile.get("age_group") in AGE_GROUPS:
        x[AGE_GROUPS.index(profile["age_group"])] = 1.0
    if profile.get("location") in LOCATIONS:
        x[len(AGE_GROUPS) + LOCATIONS.index(profile["location"])] = 1.0
    if context.get("device") in DEVICES:
        x[len(AGE_GROUPS) + len(LOCATIONS) + DEVICES.index(context["device"])] = 1.0
    return x


class MABWiserLinear(Policy):
    def __init__(self, kind: str):
        try:
            from mabwiser.mab import MAB, LearningPolicy
        except ImportError:
            raise ConfigError("the MABWiser policies need the optional extra: pip install 'banditrec[peers]'") from None
        self.name = f"mabwiser_{kind}"
        self._make = lambda arms, seed: MAB(arms, LearningPolicy.LinTS(alpha=1.0) if kind == "lints"
                                            else LearningPolicy.LinUCB(alpha=1.0), seed=seed)

    def setup(self, world, seed, workdir):
        super().setup(world, seed, workdir)
        n_items = len(world.truth.items)
        if n_items > 2000:
            raise ConfigError(f"{self.name} keeps one model per item: use the `small` scenario, not {n_items} items")
        self.mab = self._make(list(range(n_items)), seed)
        n_cat = int(world.truth.item_category.max()) + 1
        counts = np.zeros((len(world.truth.users), n_cat))
        engaged = set()
        for user, item, kind, _ in world.initial_log:
            counts[int(user[1:]), world.truth.item_category[int(item[1:])]] += 1
            if kind != "view":
                engaged.add((user, item))
        self.taste = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        users = {u["user_id"]: u for u in world.truth.users}
        rows = [(int(item[1:]), float((user, item) in engaged), _context(users[user], {}, self.taste[int(user[1:])]))
                for user, item, kind, _ in world.initial_log[-20_000:] if kind == "view"]
        if rows:
            self.mab.fit([r[0] for r in rows], [r[1] for r in rows], np.vstack([r[2] for r in rows]))

    def recommend(self, user, context, k, now):
        x = _context(self.world.truth.users[user], context, self.taste[user])
        expectations = self.mab.predict_expectations([x])
        expectations = expectations[0] if isinstance(expectations, list) else expectations
        ranked = sorted((a for a in expectations if self.world.available[a]), key=lambda a: -expectations[a])
        return x, ranked[:k]

    def reward(self, handle, item, position, reward, now):
        self.mab.partial_fit([item], [reward], np.atleast_2d(handle))
