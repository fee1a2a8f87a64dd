"""What a full build writes besides vectors: popularity (global, per demographic segment, the
A/B holdout's own list), the items' quality counts, and popularity as a 0..1 feature."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import sparse

from banditrec.config import ENGAGED_TYPES, EVENT_TYPES, Config
from retrieval.data import Interactions, segment_of
from retrieval.embeddings import interaction_matrix, popularity
from serving.experiment import HOLDOUT, HOLDOUT_SCOPE, arm_of
from store import Store


def popularity_prior(scores: np.ndarray) -> np.ndarray:
    """Popularity as a 0..1 feature: log-scaled, relative to the most popular item."""
    scaled = np.log1p(np.maximum(scores, 0.0))
    top = scaled.max() if len(scaled) else 0.0
    return scaled / top if top > 0 else np.zeros(len(scores))


def write_holdout_popularity(store: Store, items, events: Interactions, n_file: int, config: Config,
                              now: float) -> None:
    """The A/B holdout's popularity list: the file's history and the events of the holdout's
    own users, never the personalized arm's (whose clicks follow what banditrec showed
    them: a baseline fed by them would measure banditrec against itself)."""
    keep = [row for r, row in enumerate(events.rows())
            if r < n_file or arm_of(row[0], config.experiment) == HOLDOUT]
    matrix = interaction_matrix(Interactions.from_rows(keep), {item["item_id"]: r for r, item in enumerate(items)},
                                config.embedding, now)
    pop = popularity(matrix)
    store.put_popularity({items[r]["item_id"]: float(pop[r]) for r in np.flatnonzero(pop > 0)}, scope=HOLDOUT_SCOPE)


def write_quality(store: Store, items, events: Interactions) -> None:
    """Per item, its events and engagements in the history (what `POST /events` counts up)."""
    known = {item["item_id"] for item in items}
    counts, engaged = Counter(), Counter()
    for item_id, kind in zip(events.item_id, events.kind.tolist()):
        if item_id in known:
            counts[item_id] += 1
            engaged[item_id] += EVENT_TYPES[kind] in ENGAGED_TYPES
    store.put_quality({i: float(n) for i, n in counts.items()}, {i: float(n) for i, n in engaged.items() if n})


def write_popularity(store: Store, engagement, items, events: Interactions, profiles, config) -> int:
    """Global popularity, and popularity within each demographic segment."""
    pop = popularity(engagement)
    store.put_popularity({items[r]["item_id"]: float(pop[r]) for r in np.flatnonzero(pop > 0)}, scope="global")
    segments = [segment_of(profiles.get(user_id, {}), config.cold_start.segment_fields) for user_id in events.user_ids]
    names = sorted({s for s in segments if s})
    if not names or engagement.shape[1] == 0:
        return 0
    index = {name: c for c, name in enumerate(names)}
    cols = [(u, index[s]) for u, s in enumerate(segments) if s]
    onehot = sparse.csr_matrix((np.ones(len(cols)), ([u for u, _ in cols], [c for _, c in cols])),
                               shape=(engagement.shape[1], len(names)))
    per_segment = (engagement @ onehot).tocsc()
    keep = max(1000, config.retrieval.n_candidates * 4)
    for name, c in index.items():
        column = per_segment[:, c].toarray().ravel()
        top = np.argsort(-column)[:keep]
        store.put_popularity({items[r]["item_id"]: float(column[r]) for r in top if column[r] > 0},
                             scope=f"seg:{name}")
    return len(names)
