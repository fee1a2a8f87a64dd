"""Warm start: before it serves anyone, the model learns what the interaction history says.

Each logged view is an impression: reward 1 if the same user later clicked, carted or
bought the item, else 0, learned without importance weights (the history's propensities
are unknown). Features are the ones the service will use: the user's profile and taste,
the item's cached line with its popularity prior, and the similarity of the user's vector
to the item's. Only a model that does not exist yet is warm-started: a running deployment
keeps what it learned online.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from banditrec.config import Config
from bandit.features import action_line, shared_line
from bandit.vw import VWModel
from retrieval.data import Interactions
from store import Store

log = logging.getLogger(__name__)
VIEW, ENGAGED = 0, (1, 2, 3)  # EVENT_TYPES: view, click, add_to_cart, purchase


def warm_start(config: Config, store: Store, events: Interactions, *, item_rows: dict[str, int], lines: list[str],
               item_vectors: np.ndarray, user_vectors: np.ndarray, tastes: list[list[str]], profiles: dict,
               progress: bool = False) -> int:
    """Learn the history into a new model snapshot; returns the examples learned (0: skipped)."""
    if not config.model.warm_start or not len(events) or store.latest_snapshot() is not None:
        return 0
    engaged = {(u, item) for u, item, kind in zip(events.user.tolist(), events.item_id, events.kind.tolist())
               if kind in ENGAGED}
    views = [(u, item, t) for u, item, kind, t in zip(events.user.tolist(), events.item_id, events.kind.tolist(),
                                                      events.timestamp.tolist())
             if kind == VIEW and item in item_rows]
    views.sort(key=lambda v: v[2])
    views = views[-config.model.warm_start_max:]
    model = VWModel(config.model.vw_args())
    shared_cache: dict[int, str] = {}
    for u, item, _ in tqdm(views, desc="warm start", unit="example", disable=not progress, mininterval=1.0):
        shared = shared_cache.get(u)
        if shared is None:
            user = {**profiles.get(events.user_ids[u], {}), "taste": tastes[u]}
            shared = shared_cache[u] = shared_line(user, {})
        row = item_rows[item]
        sim = float(user_vectors[u] @ item_vectors[row]) if user_vectors[u].any() else None
        model.learn(shared, action_line(lines[row], sim), 1.0 if (u, item) in engaged else 0.0, 1.0)
    store.put_snapshot(model.to_bytes(), {"cursor": store.reward_head(), "learned": 0, "t": 0,
                                          "origin": "warm-start", "warm_start_examples": len(views)},
                       config.snapshot.keep)
    model.close()
    log.info("warm-started the model on %d logged views (%d users)", len(views), len(shared_cache))
    return len(views)
