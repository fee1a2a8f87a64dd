"""The simulated world: the demo generator's hidden truth, set in motion.

Users visit one at a time; each visit has a context (device, hour of the simulated day).
The truth of a click is the generator's logistic model (user x item affinity, item
quality, device x category) plus a time-of-day x category effect, times a position
effect; a click may become a purchase, after which the item is worth nothing more to
that user. Items that are not available are worth nothing.
During the run, held-back items arrive (a share of them with a high hidden quality),
items go out of stock, held-back users arrive with a profile and no history, and tastes
may drift toward other categories. Everything follows from (config, seed).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from retrieval.demo import DEVICES, generate_world
from simulations.config import WorldConfig


class SimWorld:
    def __init__(self, cfg: WorldConfig, seed: int, rounds: int, start: float = 1_764_200_000.0):
        self.cfg, self.rounds, self.start, self.seed = cfg, rounds, start, seed
        rng = np.random.default_rng([seed, 99])
        self.truth = generate_world(n_items=cfg.n_items, n_users=cfg.n_users, n_categories=cfg.n_categories,
                                    seed=seed, now=start, mean_events_per_user=cfg.mean_events_per_user,
                                    history_days=cfg.history_days)
        n_items, n_users = cfg.n_items, cfg.n_users
        held = rng.choice(n_items, size=int(cfg.new_items_share * n_items), replace=False)
        self.high_appeal = set(rng.choice(held, size=int(cfg.high_appeal_share * len(held)), replace=False).tolist()) \
            if len(held) else set()
        for i in self.high_appeal:  # better than most of the catalog
            self.truth.item_quality[i] = np.quantile(self.truth.item_quality, 0.95) + 0.5
        new_users = rng.choice(n_users, size=int(cfg.new_users_share * n_users), replace=False)
        self.new_users = set(new_users.tolist())
        held_items = set(held.tolist())
        self.initial_items = [it for i, it in enumerate(self.truth.items) if i not in held_items]
        self.initial_log = [row for row in self.truth.interactions
                            if int(row[1][1:]) not in held_items and int(row[0][1:]) not in self.new_users]
        self.available = np.ones(n_items, dtype=bool)
        self.available[held] = False
        self.available &= np.array([it["in_stock"] for it in self.truth.items])
        self.active_users = np.array(sorted(set(range(n_users)) - self.new_users))
        self._item_arrivals = _spread(rng.permutation(held), rounds)
        self._new_items = held_items
        self._user_arrivals = _spread(rng.permutation(new_users), rounds)
        n_outs = int(cfg.stock_outs_per_1000_rounds * rounds / 1000)
        self._stock_outs = Counter(int(r) for r in rng.integers(0, rounds, size=n_outs))
        self._hour_effect = rng.normal(0.0, 0.4, size=(int(self.truth.item_category.max()) + 1, 4))  # night..evening
        self.bought: dict[int, set[int]] = {}  # a bought item is worth nothing more to that user
        self._rng = rng
        self.current_round = 0
        self._drift_target = self._targets(rng)
        self.value_scale = 1.0 + cfg.purchase_rate * cfg.purchase_value

    # -- files for the build ----------------------------------------------------------------

    def write_initial(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"catalog": directory / "items.jsonl", "users": directory / "users.jsonl",
                 "interactions": directory / "interactions.csv"}
        with open(paths["catalog"], "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(it) + "\n" for it in self.initial_items)
        with open(paths["users"], "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(self.truth.users[u]) + "\n" for u in self.active_users)
        with open(paths["interactions"], "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "item_id", "type", "timestamp"])
            writer.writerows(self.initial_log)
        return paths

    # -- the run ----------------------------------------------------------------------------

    def clock(self, round_: int) -> float:
        return self.start + (round_ + 1) * self.cfg.seconds_per_round

    def changes(self, round_: int) -> list[tuple]:
        """What happens to the catalog and the user base before this round's visit."""
        self.current_round = round_
        out = []
        for i in self._item_arrivals.get(round_, ()):
            self.available[i] = True
            out.append(("item", dict(self.truth.items[i], in_stock=True)))
        for _ in range(self._stock_outs.get(round_, 0)):
            candidates = np.flatnonzero(self.available)
            if len(candidates) > 10:
                gone = int(self._rng.choice(candidates))
                self.available[gone] = False
                out.append(("stock_out", dict(self.truth.items[gone], in_stock=False)))
        for u in self._user_arrivals.get(round_, ()):
            self.active_users = np.append(self.active_users, u)
            out.append(("user", self._onboarding(int(u))))
        return out

    def _onboarding(self, user: int) -> dict:
        """An arriving user's profile; with `new_user_likes`, also that many true likes as
        onboarding preferences: drawn from the user's 4x as many best available items by
        true click probability (out of context), by a random stream of their own (the
        world's other draws are the same with and without them)."""
        doc, n = self.truth.users[user], self.cfg.new_user_likes
        if not n:
            return doc
        items = np.flatnonzero(self.available)
        best = items[np.argsort(-self.click_probability(user, items, {}, self.current_round), kind="stable")[: 4 * n]]
        liked = np.random.default_rng([self.seed, 7, user]).choice(best, size=min(n, len(best)), replace=False)
        return {**doc, "preferences": {"liked_items": [f"i{i}" for i in sorted(liked.tolist())]}}

    def visit(self, rng: np.random.Generator, round_: int) -> tuple[int, dict]:
        user = int(rng.choice(self.active_users))
        hour = int((self.clock(round_) // 3600) % 24)
        return user, {"device": DEVICES[int(rng.integers(len(DEVICES)))], "hour": hour}

    def click_probability(self, user: int, items: np.ndarray, context: dict, round_: int) -> np.ndarray:
        truth = self.truth
        latent = truth.user_latent[user]
        if self.cfg.drift > 0:
            share = self.cfg.drift * round_ / max(1, self.rounds)
            latent = (1.0 - share) * latent + share * self._drift_target[user]
            latent = latent / np.linalg.norm(latent)
        items = np.asarray(items, dtype=np.int64)
        logit = (truth.base_logit + truth.affinity_weight * (truth.item_latent[items] @ latent)
                 + truth.quality_weight * truth.item_quality[items])
        device = context.get("device")
        if device in DEVICES:
            logit = logit + truth.device_effect[truth.item_category[items], DEVICES.index(device)]
        if "hour" in context:  # time of day x category
            logit = logit + self._hour_effect[truth.item_category[items], int(context["hour"]) // 6]
        p = 1.0 / (1.0 + np.exp(-logit))
        bought = self.bought.get(user)
        if bought:
            p = np.where(np.isin(items, list(bought)), 0.0, p)
        return p

    def slate_value(self, user: int, items: list[int], context: dict, round_: int) -> float:
        """Expected reward of a slate: sum over positions of decay^(p-1) x P(click) x value.
        An item that is not available (not arrived yet, out of stock) is worth nothing."""
        if not items:
            return 0.0
        items = np.array(items)
        p = self.click_probability(user, items, context, round_) * self.available[items]
        return float((self._positions(len(items)) * p).sum() * self.value_scale)

    def oracle(self, user: int, context: dict, k: int, round_: int) -> tuple[list[int], float]:
        """The best slate under the truth (best items at the top) and its expected reward."""
        rows = np.flatnonzero(self.available)
        p = self.click_probability(user, rows, context, round_)
        best = rows[np.argsort(-p, kind="stable")[:k]].tolist()
        return best, self.slate_value(user, best, context, round_)

    def outcome(self, rng: np.random.Generator, user: int, items: list[int], context: dict,
                round_: int) -> list[float]:
        """Sampled rewards per position: 0, 1 (click) or 1 + purchase value."""
        if not items:
            return []
        shown = np.array(items)
        p = self.click_probability(user, shown, context, round_) * self.available[shown] * self._positions(len(items))
        clicks = rng.random(len(items)) < p
        bought = clicks & (rng.random(len(items)) < self.cfg.purchase_rate)
        if bought.any():
            self.bought.setdefault(user, set()).update(shown[bought].tolist())
        return (clicks * 1.0 + bought * self.cfg.purchase_value).tolist()

    def excluded(self, user: int) -> list[int]:
        """Items a client would not ask to see again for this user (sent as `exclude`): none
        here (a bought item is simply worth nothing more)."""
        return []

    def is_new(self, item: int) -> bool:
        """An item that arrived during the run."""
        return item in self._new_items

    def _positions(self, k: int) -> np.ndarray:
        return self.cfg.position_decay ** np.arange(k)

    def _targets(self, rng) -> np.ndarray:
        """Per user, another category's centre to drift toward."""
        truth = self.truth
        n_cat = int(truth.item_category.max()) + 1
        centres = np.vstack([truth.item_latent[truth.item_category == c].mean(axis=0) for c in range(n_cat)])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        favourite = np.argmax(truth.user_latent @ centres.T, axis=1)
        target = (favourite + rng.integers(1, n_cat, size=len(favourite))) % n_cat
        return centres[target]


def _spread(values: np.ndarray, rounds: int) -> dict[int, list[int]]:
    """Spread arrivals evenly over the first 80% of the run."""
    out: dict[int, list[int]] = {}
    if len(values) == 0:
        return out
    at = np.linspace(0, 0.8 * rounds, num=len(values), endpoint=False).astype(int)
    for r, v in zip(at, values):
        out.setdefault(int(r), []).append(int(v))
    return out
