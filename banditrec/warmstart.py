"""Warm start: before it serves anyone, the model learns what the interaction history says.

Each (user, item) pair of the history is an impression, at its first event (a view, or a
click sent without one): reward 1 if the same user clicked, carted or bought the item (at
any time in the history), else 0, learned without importance weights (the
history's propensities are unknown), each example weighted as at learning rate 0.1
(`ModelConfig.offline_weight`), so a low online rate does not thin out what the history says.
Features are the ones the service will use: the
user's profile and taste, the user's previous views standing in for a live session (their
categories, and the similarity of their summed vectors to the item: so the model learns
how much a session says), the item's line with its popularity and quality, and the similarity of
the user's vector to the item's. Taste,
popularity, quality and similarity are computed leaving the example's own events out, so the
label does not leak into its features. (The item vectors' collaborative part still saw
the whole history.) Only a model that does not exist yet is warm-started: a running
deployment keeps what it learned online.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

import numpy as np
from scipy import sparse
from tqdm import tqdm

from bandit.features import action_line, item_line, quality, shared_line
from bandit.vw import VWModel
from banditrec.config import ENGAGED_TYPES, EVENT_TYPES, Config
from retrieval.data import Interactions
from store import Store

log = logging.getLogger(__name__)
ENGAGED = tuple(EVENT_TYPES.index(t) for t in ENGAGED_TYPES)  # as indices into EVENT_TYPES
RECENT = 5                    # previous views that stand in for the live session


def warm_start(config: Config, store: Store, events: Interactions, *, items: list[dict], engagement: sparse.csr_matrix,
               item_vectors: np.ndarray, profiles: dict, progress: bool = False) -> int:
    """Learn the history into a new model snapshot; returns the examples learned (0: skipped)."""
    if not config.model.warm_start or not len(events) or store.latest_snapshot() is not None:
        return 0
    item_rows = {item["item_id"]: r for r, item in enumerate(items)}
    categories = [item.get("category", "") for item in items]
    by_pair = engagement.T.tocsr()                        # users x items, decayed and weighted
    raw_users = np.asarray(by_pair @ item_vectors, dtype=np.float64)  # unnormalised user vectors
    pop = np.asarray(engagement.sum(axis=1)).ravel()
    top_pop = np.log1p(pop.max()) if len(pop) and pop.max() > 0 else 1.0
    codes = {c: i for i, c in enumerate(sorted(set(categories)))}
    onehot = sparse.csr_matrix((np.ones(len(items)), (np.arange(len(items)), [codes[c] for c in categories])),
                               shape=(len(items), len(codes)))
    taste_weights = np.asarray((by_pair @ onehot).todense())  # users x categories
    names = sorted(codes, key=codes.get)

    engaged = {(u, item) for u, item, kind in zip(events.user.tolist(), events.item_id, events.kind.tolist())
               if kind in ENGAGED}
    # quality (events, engagements per item and per pair), as `POST /events` counts it
    n_item, e_item, n_pair, e_pair = Counter(), Counter(), Counter(), Counter()
    for u, item, kind in zip(events.user.tolist(), events.item_id, events.kind.tolist()):
        if item in item_rows:
            n_item[item] += 1
            n_pair[u, item] += 1
            e_item[item] += kind in ENGAGED
            e_pair[u, item] += kind in ENGAGED
    share = sum(e_item.values()) / max(1, sum(n_item.values()))
    # One impression per (user, item): its first event of any kind. A click or a purchase sent
    # without a view before it was an impression too (on real ratings fed as "rating >= 4 ->
    # click, else view", learning views only taught the model that everything is 0).
    first: dict[tuple[int, str], float] = {}
    for u, item, t in zip(events.user.tolist(), events.item_id, events.timestamp.tolist()):
        if item in item_rows and ((u, item) not in first or t < first[u, item]):
            first[u, item] = t
    views = sorted((t, u, item) for (u, item), t in first.items())[-config.model.warm_start_max:]
    model = VWModel(config.model.vw_args())
    lately: dict[int, deque] = {}
    for _, u, item in tqdm(views, desc="warm start", unit="example", disable=not progress, mininterval=1.0):
        row = item_rows[item]
        own = by_pair[u, row]  # this pair's engagement, left out of every feature below
        user_vec = raw_users[u] - own * item_vectors[row]
        norm = np.linalg.norm(user_vec)
        sim = float(user_vec @ item_vectors[row] / norm) if norm > 1e-9 else None
        weights = taste_weights[u].copy()
        weights[codes[categories[row]]] -= own
        taste = [names[c] for c in np.argsort(-weights, kind="stable")[: config.embedding.taste_categories]
                 if weights[c] > 1e-9 and names[c]]
        prior = np.log1p(max(pop[row] - own, 0.0)) / top_pop
        q = quality(e_item[item] - e_pair[u, item], n_item[item] - n_pair[u, item], share)
        recent = lately.setdefault(u, deque(maxlen=RECENT))
        session = {"cats": [c for c, _ in Counter(categories[r] for r in recent if categories[r]).most_common(3)]} \
            if recent else None
        live = None
        if recent:
            trail = item_vectors[list(recent)].sum(axis=0)
            live = float(trail @ item_vectors[row] / np.linalg.norm(trail)) if np.linalg.norm(trail) > 1e-9 else None
        user = {**profiles.get(events.user_ids[u], {}), "taste": taste}
        model.learn(shared_line(user, {}, session), action_line(item_line(items[row]), sim, live, pop=prior, quality=q),
                    1.0 if (u, item) in engaged else 0.0, 1.0 / config.model.offline_weight)
        recent.append(row)
    # Cursor 0-0: rewards already in the stream (a service that learned but had not yet written
    # a snapshot when this build ran) are learned on top of the history by whoever adopts it.
    store.put_snapshot(model.to_bytes(), {"cursor": "0-0", "learned": 0, "t": 0,
                                          "origin": "warm-start", "warm_start_examples": len(views)},
                       config.snapshot.keep)
    model.close()
    log.info("warm-started the model on %d logged views (%d users)", len(views), len(lately))
    return len(views)
