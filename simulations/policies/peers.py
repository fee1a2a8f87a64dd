"""MABWiser's LinTS and LinUCB (optional: `pip install 'banditrec[peers]'`), one linear model
per item: only the `small` scenario has few enough items for them. Their context is the
user's profile and the request's device, one-hot."""

from __future__ import annotations

import numpy as np

from banditrec.errors import ConfigError
from retrieval.demo import AGE_GROUPS, DEVICES, LOCATIONS
from simulations.policies.base import Policy


def _context(profile: dict, context: dict) -> np.ndarray:
    x = np.zeros(len(AGE_GROUPS) + len(LOCATIONS) + len(DEVICES))
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
        users = {u["user_id"]: u for u in world.truth.users}
        rows = [(int(item[1:]), float(kind != "view"), _context(users[user], {}))
                for user, item, kind, _ in world.initial_log[:20_000]]
        if rows:
            self.mab.fit([r[0] for r in rows], [r[1] for r in rows], np.vstack([r[2] for r in rows]))

    def recommend(self, user, context, k, now):
        x = _context(self.world.truth.users[user], context)
        expectations = self.mab.predict_expectations([x])
        expectations = expectations[0] if isinstance(expectations, list) else expectations
        ranked = sorted((a for a in expectations if self.world.available[a]), key=lambda a: -expectations[a])
        return x, ranked[:k]

    def reward(self, handle, item, position, reward, now):
        self.mab.partial_fit([item], [reward], np.atleast_2d(handle))
