"""What a user's stored state means for a request, and how one event changes it.

A user's state (`serving.records.UserState`, read by `store.users`) holds a long-term vector
per embedding space, recent events, seen items, an interaction count and the time of the
last event. The session vector is derived from the recent events on each request.
`UserMemory` keeps the last states read, to serve users personally while Redis is away.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict

import numpy as np

from banditrec.config import RealtimeConfig
from serving.records import Preferences, UserState

# What a kept state costs in Python objects, roughly (tracemalloc, states as `store.user_state`
# parses them): ~2 KB for the profile, tastes and counts, ~0.5 KB per vector, ~0.3 KB per recent
# event, ~0.1 KB per seen item. A user with 50 recent events and 1000 seen items: ~120 KB.
STATE_BYTES, VECTOR_BYTES, RECENT_BYTES, SEEN_BYTES = 2048, 512, 300, 100


def state_bytes(state: UserState) -> int:
    """About how much memory `state` holds."""
    return (STATE_BYTES + VECTOR_BYTES * len(state.vectors) + RECENT_BYTES * len(state.recent)
            + SEEN_BYTES * len(state.seen))


class UserMemory:
    """The last state seen of the most recent users, to serve them personally while Redis is
    away: at most `budget_mb` of them (`state_bytes`), the least recently seen dropped first.
    A bound in bytes, not in users: 10,000 users with long histories held over 1 GB."""

    def __init__(self, budget_mb: float = 8.0):
        self.budget = int(budget_mb * 1024 * 1024)
        self._states: OrderedDict[str, tuple[UserState, int]] = OrderedDict()
        self.bytes = 0
        self._lock = threading.Lock()

    def put(self, user_id: str, state: UserState) -> None:
        if not state.known:
            return
        size = state_bytes(state)
        with self._lock:
            old = self._states.pop(user_id, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.budget:
                return
            self._states[user_id] = (state, size)
            self.bytes += size
            while self.bytes > self.budget:
                self.bytes -= self._states.popitem(last=False)[1][1]

    def get(self, user_id: str) -> UserState:
        kept = self._states.get(user_id)
        return kept[0] if kept is not None else UserState()

    def __len__(self) -> int:
        return len(self._states)


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 and np.isfinite(norm) else None


def long_term_vector(state: UserState, space: str | None) -> np.ndarray | None:
    """The long-term vector in the served embedding space, if the user has one."""
    if space is None:
        return None
    return _unit(state.vectors.get(space))


def session_vector(state: UserState, catalog, now: float, cfg: RealtimeConfig,
                   weights: dict[str, float]) -> np.ndarray | None:
    """The live session as a vector: event-weighted, recency-weighted (half-life
    `session_half_life_s`) sum of the vectors of the session's items, from the recent-events
    list. Derived per request, so it is always in the served space and never raced."""
    if not state.recent:
        return None
    top = max(weights.values())
    rows, w = [], []
    for event in state.recent:
        age = now - event["ts"]
        row = catalog.row_of.get(event["i"])
        if row is None or not 0 <= age <= cfg.recent_ttl_s:
            continue
        rows.append(row)
        w.append(weights.get(event["t"], 0.0) / top * 2.0 ** (-age / cfg.session_half_life_s))
    if not rows:
        return None
    return _unit(np.asarray(w) @ catalog.vectors(np.asarray(rows)).astype(np.float64))


_UNSET = object()


def query_vector(state: UserState, catalog, now: float, cfg: RealtimeConfig,
                 weights: dict[str, float], session=_UNSET) -> np.ndarray | None:
    """Blend of session and long-term vectors (`session_weight`); either alone if the other is
    missing; without a long-term vector in this catalog's space, the onboarding preferences'.
    Pass `session` when it was computed already (None: there is none)."""
    if session is _UNSET:
        session = session_vector(state, catalog, now, cfg, weights)
    long_term = long_term_vector(state, catalog.space)
    if long_term is None and state.preferences:
        long_term = preference_vector(state.preferences, catalog)
    if session is None or long_term is None:
        return session if session is not None else long_term
    w = cfg.session_weight
    return _unit(w * session + (1.0 - w) * long_term)


DISLIKE_WEIGHT = 0.5  # how far disliked items push a preference vector away, relative to the liked ones


def preference_vector(preferences: Preferences, catalog) -> np.ndarray | None:
    """A starting vector from onboarding preferences: the mean of the liked items' vectors and
    the liked categories' centroids, pushed away from the disliked items; None when nothing
    liked is in the catalog."""
    rows = catalog.rows_for(preferences.liked_items)
    liked = [*catalog.vectors(rows)] if len(rows) else []
    liked += [c for c in map(catalog.category_centroid, preferences.liked_categories) if c is not None]
    if not liked:
        return None
    vector = np.mean(liked, axis=0)
    disliked = catalog.rows_for(preferences.disliked_items)
    if len(disliked):
        vector = vector - DISLIKE_WEIGHT * catalog.vectors(disliked).mean(axis=0)
    return _unit(vector.astype(np.float32))


def preference_taste(preferences: Preferences, catalog, n: int) -> tuple[str, ...]:
    """Up to n top categories from onboarding preferences: the liked categories, then the
    liked items' categories by how many of them there are."""
    rows = catalog.rows_for(preferences.liked_items)
    counted = Counter(catalog.category(int(r)) for r in rows)
    named = [c for c in preferences.liked_categories if catalog.code_of(c) is not None]
    return tuple(dict.fromkeys([*named, *(c for c, _ in counted.most_common() if c)]))[:n]


def realtime_features(state: UserState, now: float, cfg: RealtimeConfig) -> dict:
    """Features of the live session for the bandit: recent categories, session length, recency."""
    if not state.recent:
        return {}
    recent = [e for e in state.recent if now - e["ts"] <= cfg.recent_ttl_s]
    if not recent:
        return {"since": "long"}
    categories = Counter(e["c"] for e in recent if e.get("c"))
    since = now - max(e["ts"] for e in recent)
    return {"cats": [c for c, _ in categories.most_common(3)],
            "len": "1" if len(recent) == 1 else "2-4" if len(recent) < 5 else "5-9" if len(recent) < 10 else "10+",
            "since": "1m" if since < 60 else "10m" if since < 600 else "30m"}


def long_term_step(item_vector: np.ndarray, weight: float, cfg: RealtimeConfig):
    """One exponential-moving-average step of the long-term vector toward an item, scaled by
    the event type's weight; the first event of a user without a vector starts it."""
    v = np.asarray(item_vector, dtype=np.float32)
    step = min(1.0, cfg.ema_alpha * weight)

    def apply(old: np.ndarray | None) -> np.ndarray | None:
        old = _unit(old) if old is not None else None
        return _unit(v if old is None else (1.0 - step) * old + step * v)

    return apply
