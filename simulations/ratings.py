"""A world from real ratings: MovieLens 100k, a ground truth fitted to it, the history split,
what a service is told about items and users, the in-process baselines of the real-data
benchmark (`benchmarks.realdata`, which drives a service over HTTP) and the simulator's
`movielens` scenario (`RatingsWorld`, in-process). No HTTP here.

Data: MovieLens 100k, fetched at run time and read by `simulations.movielens` (its licence there).

Ground truth (`fit_truth`): a biased matrix factorisation r̂(u, i) = μ + b_u + b_i + p_u·q_i
(ALS, rank 16, ridge 5, 15 sweeps, seed 0) fitted to ALL ratings, mapped to a click
probability p(u, i) = sigmoid(slope × (r̂ − b)) with slope 2 per star and b chosen so that the
mean p over the (user, item) pairs rated >= 4 is `target` (0.3). A shown item at position j
(1-based) is clicked with p(u, i) / log2(j + 1).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from simulations.movielens import MovieLens, load_movielens, movielens_dir
from simulations.world import SimWorld

EVENT_MODES = ("click-or-view", "view-and-click")


# --- ground truth --------------------------------------------------------------------------

@dataclass
class Truth:
    """p[u, i]: the probability that user u clicks item i at position 1."""

    p: np.ndarray
    slope: float
    threshold: float
    rmse: float            # of r̂ on the ratings it was fitted to (stars)
    mean_liked: float      # mean p over pairs rated >= 4
    mean_all: float        # mean p over all pairs
    item_mean: np.ndarray = field(repr=False, default=None)  # mean p over users, per item


def discount(k: int) -> np.ndarray:
    """Position effect: 1 / log2(position + 1) for positions 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def fit_truth(ml: MovieLens, *, rank: int = 16, reg: float = 5.0, sweeps: int = 15, seed: int = 0,
              slope: float = 2.0, target: float = 0.3) -> Truth:
    """ALS with biases on all ratings, then p = sigmoid(slope (r̂ - threshold)), the threshold
    found by bisection so that mean p over pairs rated >= 4 equals `target`."""
    n_users, n_items = ml.shape
    rng = np.random.default_rng(seed)
    mu = float(ml.rating.mean())
    P = rng.normal(0.0, 0.1, (n_users, rank))
    Q = rng.normal(0.0, 0.1, (n_items, rank))
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    by_user = [np.flatnonzero(ml.user == u) for u in range(n_users)]
    by_item = [np.flatnonzero(ml.item == i) for i in range(n_items)]
    eye = reg * np.eye(rank + 1)

    def solve(rows, other, other_bias, own_index, other_index):
        X = np.hstack([np.ones((len(rows), 1)), other[other_index[rows]]])
        y = ml.rating[rows] - mu - other_bias[other_index[rows]]
        w = np.linalg.solve(X.T @ X + eye, X.T @ y)
        return w[0], w[1:]

    for _ in range(sweeps):
        for u, rows in enumerate(by_user):
            if len(rows):
                bu[u], P[u] = solve(rows, Q, bi, ml.user, ml.item)
        for i, rows in enumerate(by_item):
            if len(rows):
                bi[i], Q[i] = solve(rows, P, bu, ml.item, ml.user)
    r_hat = mu + bu[:, None] + bi[None, :] + P @ Q.T
    rmse = float(np.sqrt(np.mean((r_hat[ml.user, ml.item] - ml.rating) ** 2)))
    liked = ml.rating >= 4
    liked_hat = r_hat[ml.user[liked], ml.item[liked]] if liked.any() else r_hat.ravel()
    lo, hi = -10.0, 15.0
    for _ in range(60):  # mean p over liked pairs falls as the threshold rises
        mid = (lo + hi) / 2
        if _sigmoid(slope * (liked_hat - mid)).mean() > target:
            lo = mid
        else:
            hi = mid
    threshold = (lo + hi) / 2
    p = _sigmoid(slope * (r_hat - threshold))
    return Truth(p=p, slope=slope, threshold=threshold, rmse=rmse,
                 mean_liked=float(_sigmoid(slope * (liked_hat - threshold)).mean()), mean_all=float(p.mean()),
                 item_mean=p.mean(axis=0))


# --- history -------------------------------------------------------------------------------

@dataclass
class History:
    """The older half of each user's ratings, as events: rating >= 4 is a click, else a view."""

    user: np.ndarray       # per event, time-ordered
    item: np.ndarray
    click: np.ndarray      # bool
    timestamp: np.ndarray
    seen: list[set]        # per user: items in their history (never recommended to them again)
    clicks_per_item: np.ndarray

    @property
    def last_timestamp(self) -> float:
        return float(self.timestamp.max()) + 1.0  # (a click may follow its view by a second)

    def events(self, ml: MovieLens, shift: float = 0.0, mode: str = "click-or-view"):
        """(user_id, item_id, type, timestamp) rows, timestamps moved by `shift` seconds.
        `click-or-view`: a rating >= 4 is a click, any other a view. `view-and-click`: every
        rating is a view (the user watched it) and a rating >= 4 also a click a second later,
        as the service's data model reads events (a view is an impression, a click engages)."""
        if mode not in EVENT_MODES:
            raise ValueError(f"mode must be one of {', '.join(EVENT_MODES)}, got {mode!r}")
        for u, i, c, t in zip(self.user.tolist(), self.item.tolist(), self.click.tolist(), self.timestamp.tolist()):
            if mode == "view-and-click":
                yield ml.user_ids[u], ml.item_ids[i], "view", int(t + shift)
                if c:
                    yield ml.user_ids[u], ml.item_ids[i], "click", int(t + shift) + 1
            else:
                yield ml.user_ids[u], ml.item_ids[i], "click" if c else "view", int(t + shift)

    def n_events(self, mode: str = "click-or-view") -> int:
        return len(self.user) + (int(self.click.sum()) if mode == "view-and-click" else 0)


def split_history(ml: MovieLens, share: float = 0.5) -> History:
    """Per user, ratings by time (ties by item): the oldest floor(share x n) are the history."""
    keep = []
    for u in range(ml.shape[0]):
        rows = np.flatnonzero(ml.user == u)
        rows = rows[np.lexsort((ml.item[rows], ml.timestamp[rows]))]
        keep.append(rows[: int(share * len(rows))])
    rows = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    rows = rows[np.lexsort((ml.item[rows], ml.user[rows], ml.timestamp[rows]))]
    seen = [set() for _ in range(ml.shape[0])]
    for u, i in zip(ml.user[rows].tolist(), ml.item[rows].tolist()):
        seen[u].add(i)
    click = ml.rating[rows] >= 4
    return History(user=ml.user[rows], item=ml.item[rows], click=click, timestamp=ml.timestamp[rows], seen=seen,
                   clicks_per_item=np.bincount(ml.item[rows][click], minlength=ml.shape[1]).astype(np.float64))


# --- what a service is told ------------------------------------------------------------

AGE_GROUPS = ((18, "under-18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (200, "55+"))


def item_record(ml: MovieLens, i: int, shift: float) -> dict:
    """A movie as a catalog item: category = its first genre, every genre a boolean attribute,
    release year as an attribute and as `published_at` (1 January, moved like the events)."""
    meta = ml.items[i]
    attributes = {f"genre_{g.lower()}": True for g in meta["genres"]}
    published = 0
    if meta["year"]:
        attributes["year"] = meta["year"]
        attributes["decade"] = f"{meta['year'] // 10 * 10}s"
        published = max(0, int(datetime(meta["year"], 1, 1, tzinfo=timezone.utc).timestamp() + shift))
    return {"title": meta["title"], "category": (meta["genres"] or ["unknown"])[0], "attributes": attributes,
            "in_stock": True, "published_at": published}


def user_profile(ml: MovieLens, u: int) -> dict:
    """The profile fields PUT /users accepts (age_group, location, signup_source): the age as a
    group and the first digit of the zip code (a US region) as location. Gender and occupation
    have no profile field; `--user-context` sends them as request context instead."""
    meta = ml.users[u]
    profile = {}
    if meta["age"] is not None:
        profile["age_group"] = next(name for bound, name in AGE_GROUPS if meta["age"] < bound)
    if meta["zip"]:
        profile["location"] = f"zip{meta['zip'][0]}"
    return profile


def user_context(ml: MovieLens, u: int) -> dict:
    return {"gender": ml.users[u]["gender"], "occupation": ml.users[u]["occupation"]}


# --- baselines -----------------------------------------------------------------------------

def _first_allowed(order: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    return order[~excluded[order]][:k]


def baselines(truth: Truth, history: History, users: np.ndarray, live_clicks: list[list[int]], k: int,
              seed: int, draws: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Expected clicks per round of the in-process policies on the served rounds' users.

    Each policy runs its own loop (closed loop): its exclude sets are the user's history plus
    what the user clicked in *that policy's* earlier slates, as they would be had it served
    the users instead. Clicks are drawn with `draws[r, j]` (the uniforms banditrec's clicks
    were drawn with: common random numbers, so paired differences are tight), else with a
    seeded stream. Policies: `oracle` (the user's top k by true p), `best_static` (items by
    their mean true p over all users), `popularity` (most clicked so far: history clicks plus
    its own clicks), `random` (k allowed items uniformly).

    `best_static_open` is the best non-personalised ranking scored on banditrec's exclude
    sets instead (`live_clicks[r]`: the items clicked in banditrec's round r), as reports before
    December 2026 scored every baseline. It is not a counterfactual: it never pays for its own
    clicks (the good items it would have used up stay available to it, and banditrec's users
    used up different ones), so it overstates the best ranking in later rounds."""
    n_users, n_items = truth.p.shape
    disc = discount(k)
    if draws is None:
        draws = np.random.default_rng([seed, 3]).random((len(users), k))
    rng_random = np.random.default_rng([seed, 2])
    seen = np.zeros((n_users, n_items), dtype=bool)
    for u, items in enumerate(history.seen):
        seen[u, list(items)] = True
    names = ("oracle", "best_static", "popularity", "random")
    excluded = {name: seen.copy() for name in (*names, "best_static_open")}
    static = np.argsort(-truth.item_mean, kind="stable")
    counts = history.clicks_per_item.copy()
    out = {name: np.zeros(len(users)) for name in excluded}
    for r, u in enumerate(users.tolist()):
        p = truth.p[u]
        for name in names:
            ex = excluded[name][u]
            if name == "oracle":
                allowed = np.flatnonzero(~ex)
                slate = allowed[np.argsort(-p[allowed], kind="stable")[:k]]
            elif name == "best_static":
                slate = _first_allowed(static, ex, k)
            elif name == "popularity":
                slate = _first_allowed(np.lexsort((np.arange(n_items), -counts)), ex, k)
            else:
                allowed = np.flatnonzero(~ex)
                slate = rng_random.choice(allowed, size=min(k, len(allowed)), replace=False)
            shown = p[slate] * disc[: len(slate)]
            out[name][r] = shown.sum()
            clicked = slate[draws[r, : len(slate)] < shown]
            ex[clicked] = True
            if name == "popularity":
                counts[clicked] += 1.0
        ex = excluded["best_static_open"][u]
        slate = _first_allowed(static, ex, k)
        out["best_static_open"][r] = p[slate] @ disc[: len(slate)]
        ex[live_clicks[r]] = True  # later rounds exclude what banditrec's user clicked here
    return out


# --- the simulator's world ------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _movielens_world(directory: str | None) -> tuple[MovieLens, Truth, History]:
    ml = load_movielens(directory or movielens_dir())
    return ml, fit_truth(ml), split_history(ml)


class RatingsWorld(SimWorld):
    """The simulator's `movielens` world (`world.source = "movielens"`): MovieLens 100k's
    items, users and the older half of each user's ratings as the history (rating >= 4 a
    click, else a view, moved to end at `start`), with the truth fitted to all ratings as the
    click model. What a user rated or clicked is worth nothing more to them (a film is
    watched once). No items arrive, nothing goes out of stock; `n_items`, `n_users` and the
    other generator settings do not apply. The data is fetched at run time (`movielens_dir`)."""

    def __init__(self, cfg, seed: int, rounds: int, start: float = 1_764_200_000.0):  # no super(): nothing generated
        ml, truth, history = _movielens_world(cfg.data_dir or None)
        self.cfg, self.rounds, self.start = cfg, rounds, start
        shift = start - history.last_timestamp
        self.p = truth.p
        self.truth = _RatingsTruth(
            items=[{"item_id": f"i{i}", **item_record(ml, i, shift)} for i in range(ml.shape[1])],
            users=[{"user_id": f"u{u}", **user_profile(ml, u)} for u in range(ml.shape[0])])
        self.initial_items = self.truth.items
        self.initial_log = [(f"u{u}", f"i{i}", "click" if c else "view", int(t + shift)) for u, i, c, t in
                            zip(history.user.tolist(), history.item.tolist(), history.click.tolist(),
                                history.timestamp.tolist())]
        self.available = np.ones(ml.shape[1], dtype=bool)
        self.active_users = np.arange(ml.shape[0])
        self.new_users, self.high_appeal, self._new_items = set(), set(), set()
        self._item_arrivals, self._user_arrivals, self._stock_outs = {}, {}, Counter()
        self.bought = {u: set(items) for u, items in enumerate(history.seen)}  # rated: seen already
        self._rng = np.random.default_rng([seed, 99])
        self.current_round = 0
        self.value_scale = 1.0 + cfg.purchase_rate * cfg.purchase_value

    def click_probability(self, user, items, context, round_):
        items = np.asarray(items, dtype=np.int64)
        p = self.p[user, items]
        consumed = self.bought.get(user)
        return np.where(np.isin(items, list(consumed)), 0.0, p) if consumed else p

    def excluded(self, user: int) -> list[int]:
        """What the user rated or clicked: the client excludes it, as the real-data benchmark's does."""
        return sorted(self.bought.get(user, ()))

    def outcome(self, rng, user, items, context, round_):
        rewards = super().outcome(rng, user, items, context, round_)
        self.bought.setdefault(user, set()).update(i for i, r in zip(items, rewards) if r > 0)  # watched
        return rewards


@dataclass
class _RatingsTruth:
    items: list[dict]
    users: list[dict]
