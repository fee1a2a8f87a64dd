"""What a user's stored state means for a request, and how one event changes it.

A user's state (see `store.users`) holds a long-term vector per embedding space, a session
vector (a recency-weighted sum of the session's item vectors), recent events, seen items,
an interaction count and the time of the last event.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from banditrec.config import RealtimeConfig


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 and np.isfinite(norm) else None


def long_term_vector(state: dict | None, space: str | None) -> np.ndarray | None:
    """The long-term vector in the served embedding space, if the user has one."""
    if not state or space is None:
        return None
    return _unit(state["vectors"].get(space))


def session_vector(state: dict | None, space: str | None, now: float, cfg: RealtimeConfig) -> np.ndarray | None:
    """The session vector if the session is alive (an event within `recent_ttl_s`) and in this space."""
    if not state or not state.get("session") or space is None:
        return None
    vector, vspace, ts = state["session"]
    if vspace != space or now - ts > cfg.recent_ttl_s:
        return None
    return _unit(vector)


def query_vector(state: dict | None, space: str | None, now: float, cfg: RealtimeConfig) -> np.ndarray | None:
    """Blend of session and long-term vectors (`session_weight`); either alone if the other is missing."""
    session, long_term = session_vector(state, space, now, cfg), long_term_vector(state, space)
    if session is None or long_term is None:
        return session if session is not None else long_term
    w = cfg.session_weight
    return _unit(w * session + (1.0 - w) * long_term)


def realtime_features(state: dict | None, now: float, cfg: RealtimeConfig) -> dict:
    """Features of the live session for the bandit: recent categories, session length, recency."""
    if not state or not state.get("recent"):
        return {}
    recent = [e for e in state["recent"] if now - e["ts"] <= cfg.recent_ttl_s]
    if not recent:
        return {"since": "long"}
    categories = Counter(e["c"] for e in recent if e.get("c"))
    since = now - max(e["ts"] for e in recent)
    return {"cats": [c for c, _ in categories.most_common(3)],
            "len": "1" if len(recent) == 1 else "2-4" if len(recent) < 5 else "5-9" if len(recent) < 10 else "10+",
            "since": "1m" if since < 60 else "10m" if since < 600 else "30m"}


def event_updates(state: dict | None, item_vector: np.ndarray | None, space: str | None, weight: float,
                  ts: float, cfg: RealtimeConfig) -> dict:
    """Hash fields to write for one event: last-event time, and (for a known item) the session
    vector and an exponential-moving-average step of the long-term vector."""
    fields = {"last": repr(float(ts))}
    if item_vector is None or space is None or weight <= 0:
        return fields
    v = np.asarray(item_vector, dtype=np.float64)
    session = None
    if state and state.get("session"):
        old, vspace, old_ts = state["session"]
        if vspace == space and 0 <= ts - old_ts <= cfg.recent_ttl_s:
            session = np.asarray(old, dtype=np.float64) * 2.0 ** (-(ts - old_ts) / cfg.session_half_life_s)
    session = weight * v if session is None else session + weight * v
    fields.update(svec=session.astype(np.float32).tobytes(), sspace=space, sts=repr(float(ts)))
    long_term = long_term_vector(state, space)
    step = min(1.0, cfg.ema_alpha * weight)
    updated = v if long_term is None else (1.0 - step) * long_term + step * v
    unit = _unit(np.asarray(updated, dtype=np.float32))
    if unit is not None:
        fields[f"vec:{space}"] = unit.tobytes()
    return fields
