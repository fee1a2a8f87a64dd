"""Vowpal Wabbit text features for users, context and items.

Namespaces (VW pairs them by first letter): `User` (profile, taste), `Context` (request
context), `Recent` (the live session: recent categories, length, time since the last
event), `Item` (id, category, attributes; cached per item), `Pop` (the item's long-term
popularity now, 0..1: the build's counts plus every event since, log-scaled relative to the
most popular item), `Sim` (the retrieval similarity between the user's vector and the item),
`Live` (the similarity between the live session's vector and the item), `Q` (the item's
quality now, 0..1: the share of its events that were engagements, shrunk towards the
catalog's share). Values from clients are sanitised:
whitespace, `|` and `:` cannot reach VW's parser.

>>> shared_line({"age_group": "25-34", "taste": ["shoes"]}, {"device": "mobile", "hour": 21})
'shared |User age=25-34 taste=shoes |Context device=mobile hour=21'
>>> item_line({"item_id": "i3", "category": "shoes", "attributes": {"price": 59.0}})
'|Item id=i3 cat=shoes price=5'
>>> action_line('|Item id=i3', 0.83)
'|Item id=i3 |Sim s:0.8300'
>>> action_line('|Item id=i3', 0.83, pop=0.5, quality=0.25)
'|Item id=i3 |Sim s:0.8300 |Pop p:0.5000 |Q q:0.2500'
"""

from __future__ import annotations

import functools
import hashlib
import math
import re

import numpy as np

_UNSAFE = re.compile(r"[\s|:]+")
_PROFILE = (("age_group", "age"), ("location", "loc"), ("signup_source", "src"))
MAX_TOKEN = 96


def token(value) -> str:
    """A feature-safe token: no whitespace, '|' or ':'; at most 96 characters."""
    return _UNSAFE.sub("_", str(value))[:MAX_TOKEN] or "_"


def id_token(value: str) -> str:
    """Like `token`, but distinct ids stay distinct: a changed or shortened id gets a hash suffix.

    >>> id_token("sku_1"), id_token("sku 1") != id_token("sku_1")
    ('sku_1', True)
    """
    safe = token(value)
    if safe == value:
        return safe
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{safe[:MAX_TOKEN - 17]}~{digest}"


def _value_feature(key: str, value) -> str:
    if isinstance(value, bool):
        return f"{token(key)}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{token(key)}={value}"
    if isinstance(value, float):
        if math.isfinite(value):  # numbers by order of magnitude, like the content encoder
            return f"{token(key)}={int(math.floor(math.log2(abs(value) + 1.0)))}"
        return ""
    if value is None:
        return ""
    return f"{token(key)}={token(value)}"


def item_line(item: dict) -> str:
    """The cached per-item part of an action line (what does not change between requests)."""
    parts = [f"|Item id={id_token(item['item_id'])}"]
    if item.get("category"):
        parts.append(f"cat={token(item['category'])}")
    for key, value in sorted((item.get("attributes") or {}).items()):
        feature = _value_feature(key, value)
        if feature:
            parts.append(feature)
    return " ".join(parts)


def strip_popularity(line: str) -> str:
    """An item line as older builds cached it (with a fixed `|Pop` part), without it."""
    cut = line.find(" |Pop ")
    return line if cut < 0 else line[:cut]


QUALITY_PSEUDO_EVENTS = 10.0  # events at the catalog's engagement share an item's own counts start from


def quality(engaged: float, events: float, share: float) -> float:
    """An item's quality, 0..1: the share of its events that were engagements, shrunk towards
    the catalog's `share` by `QUALITY_PSEUDO_EVENTS` events, so an item met twice and clicked
    twice does not outrank one clicked by half of its thousand viewers.

    >>> round(quality(2, 2, 0.2), 3), round(quality(500, 1000, 0.2), 3), quality(0, 0, 0.2)
    (0.333, 0.497, 0.2)
    """
    return (engaged + QUALITY_PSEUDO_EVENTS * share) / (events + QUALITY_PSEUDO_EVENTS)


POSITION_PSEUDO_IMPRESSIONS = 100.0  # impressions at the top position's rate a position's own counts start from


def position_weights(impressions: dict[int, float], rewards: dict[int, float]) -> dict[int, float]:
    """How much an impression at each slate position is worth, relative to the top one: the
    position's reward rate over position 1's, from the service's own labelled impressions,
    shrunk towards 1 by `POSITION_PSEUDO_IMPRESSIONS` and kept in [0.05, 1]. An item shown at
    position 8 is then not judged worse than one shown first for drawing fewer clicks.

    >>> position_weights({1: 1000, 2: 1000, 9: 0}, {1: 200, 2: 100})
    {1: 1.0, 2: 0.5454545454545454, 9: 1.0}
    """
    top_n, top_r = impressions.get(1, 0.0), rewards.get(1, 0.0)
    if top_n <= 0 or top_r <= 0:
        return {j: 1.0 for j in impressions}
    rate = top_r / top_n
    out = {}
    for j, n in impressions.items():
        own = (rewards.get(j, 0.0) + POSITION_PSEUDO_IMPRESSIONS * rate) / (n + POSITION_PSEUDO_IMPRESSIONS)
        out[j] = 1.0 if j <= 1 else min(1.0, max(0.05, own / rate))
    return out


def live_factor(rewards: np.ndarray, exposure: np.ndarray, share: float) -> float:
    """What puts live rewards on the events' scale: the catalog's engagement `share` over the
    live reward rate of everything shown (0 while nothing was shown or rewarded)."""
    total_exposure, total_rewards = float(np.sum(exposure)), float(np.sum(rewards))
    return share * total_exposure / total_rewards if total_exposure > 0 and total_rewards > 0 else 0.0


def live_quality(engaged: np.ndarray, events: np.ndarray, rewards: np.ndarray, exposure: np.ndarray, share: float,
                 weight: float = 0.5, factor: float | None = None) -> np.ndarray:
    """Items' quality once the service has shown them, 0..1: their engagements per event pooled
    with the service's own labelled impressions (rewards per position-weighted exposure, each
    exposure counting as `weight` events), one rate shrunk towards the catalog's `share` by
    `QUALITY_PSEUDO_EVENTS`. Live rewards are put on the events' scale by one factor for the
    catalog (`live_factor`; pass `factor` when the arrays are a few items, not the catalog).
    Event counts alone mislead
    once the service serves: its clicks arrive as events, its unclicked impressions do not, so
    whatever is shown looks ever better; pooled, an item shown often and rarely clicked sinks
    towards (and below) the catalog's share, and the next best gets its turn.

    >>> live_quality(np.array([5.0, 5.0, 0.0]), np.array([10.0, 10.0, 0.0]), np.array([30.0, 10.0, 0.0]),
    ...              np.array([100.0, 100.0, 0.0]), 0.5, weight=1.0).round(3)
    array([0.708, 0.292, 0.5  ])
    """
    engaged, events = np.asarray(engaged, dtype=np.float64), np.asarray(events, dtype=np.float64)
    factor = live_factor(rewards, exposure, share) if factor is None else factor
    w = weight if weight > 0 and factor > 0 else 0.0
    return ((engaged + w * factor * np.asarray(rewards) + QUALITY_PSEUDO_EVENTS * share)
            / (events + w * np.asarray(exposure) + QUALITY_PSEUDO_EVENTS))


_STEPS = 10_000  # similarities are features at 4 decimals, in [-1, 1]


@functools.cache
def _decimals() -> list[str]:
    """"0.8300"-style text of every value in [-1, 1] at 4 decimals, by step: formatting 4000
    floats per request cost more than the rest of building the candidates' lines. One table for
    every feature (~1.3 MB per process; one per feature held ~5.5 MB)."""
    return [f"{i / _STEPS:.4f}" for i in range(-_STEPS, _STEPS + 1)]


def _steps(values) -> list[int]:
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return (np.rint(np.clip(v, -1.0, 1.0) * _STEPS).astype(np.int64) + _STEPS).tolist()


def action_line(cached_item_line: str, sim: float | None, live: float | None = None, pop: float = 0.0,
                quality: float | None = None) -> str:
    """An item's full action line for one request: cached features + the similarity of the
    item to the user's query vector (`Sim`) and to the live session alone (`Live`) + its
    popularity now (`Pop`, left out at 0) + its quality now (`Q`)."""
    text = _decimals()
    line = cached_item_line if sim is None else f"{cached_item_line} |Sim s:{text[_step(sim)]}"
    line = line if live is None else f"{line} |Live s:{text[_step(live)]}"
    line = f"{line} |Pop p:{text[_step(pop)]}" if pop > 0 else line
    return line if quality is None else f"{line} |Q q:{text[_step(quality)]}"


def _step(value: float) -> int:
    """`_steps` for one value (Python's round, like np.rint, rounds half to even)."""
    value = float(value)
    value = 0.0 if value != value else min(1.0, max(-1.0, value))
    return int(round(value * _STEPS)) + _STEPS


def action_lines(cached, rows, sims=None, live=None, pops=None, quality=None) -> list[str]:
    """`action_line` for many rows at once (the request path's loop over candidates); `cached`
    is a list of item lines by row, or anything with `take(rows)` (the catalog's mapped lines).
    Each line is built by one f-string (one new string per candidate, not one per feature)."""
    rows = rows.tolist() if hasattr(rows, "tolist") else list(rows)
    lines = cached.take(rows) if hasattr(cached, "take") else [cached[r] for r in rows]
    if sims is None and live is None and pops is None and quality is None:
        return lines
    text = _decimals()
    if sims is not None and quality is not None and pops is not None:  # the request path's shapes
        s, q, p = [text[i] for i in _steps(sims)], [text[i] for i in _steps(quality)], _steps(pops)
        if live is not None:
            lv = [text[i] for i in _steps(live)]
            return [f"{line} |Sim s:{a} |Live s:{b} |Pop p:{text[c]} |Q q:{d}" if c > _STEPS else
                    f"{line} |Sim s:{a} |Live s:{b} |Q q:{d}" for line, a, b, c, d in zip(lines, s, lv, p, q)]
        return [f"{line} |Sim s:{a} |Pop p:{text[c]} |Q q:{d}" if c > _STEPS else f"{line} |Sim s:{a} |Q q:{d}"
                for line, a, c, d in zip(lines, s, p, q)]
    for values, label, positive in ((sims, " |Sim s:", False), (live, " |Live s:", False), (pops, " |Pop p:", True),
                                    (quality, " |Q q:", False)):
        if values is not None:  # any other shape: a feature at a time
            lines = [line + label + text[i] if i > _STEPS or not positive else line
                     for line, i in zip(lines, _steps(values))]
    return lines


def prior_examples(similarity: float, popularity: float, quality: float = 0.0, session: float = 0.0,
                   n: int = 2000, seed: int = 0) -> list[tuple[str, str, float]]:
    """(shared, action, reward) examples that teach a new model "expected reward =
    similarity x Sim + popularity x Pop + quality x Q + session x Live": an untrained model
    then ranks by what it can know without any reward (how close an item is to the user's
    taste, how much everyone engages with it, how often those who meet it engage, how close
    it is to what the user does right now) instead of by whatever its
    first noisy updates say. (Measured: online learning from an all-zero model ended below
    the untrained ranking after 3000 rewards; on real ratings, a click count alone beat a
    model without it.) The shared namespace `Z` is crossed with nothing.

    >>> [round(r, 2) for _, _, r in prior_examples(0.5, 0.25, 1.0, n=3)]
    [0.75, 0.7, 0.31]
    """
    rng = np.random.default_rng(seed)
    out = []
    draws = zip(rng.uniform(-1.0, 1.0, n), rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 1.0, n),
                rng.uniform(-1.0, 1.0, n))
    for sim, pop, q, live in draws:
        action = action_line("|Item prior", float(sim), float(live) if session else None, pop=float(pop),
                             quality=float(q) if quality else None)
        reward = similarity * float(sim) + popularity * float(pop) + quality * float(q) + session * float(live)
        out.append(("shared |Z prior", action, reward))
    return out


def shared_line(user: dict | None, context: dict, recent: dict | None = None) -> str:
    """The per-request shared features: user profile and taste, request context, live session."""
    parts = ["shared |User"]
    user = user or {}
    for field, short in _PROFILE:
        if user.get(field):
            parts.append(f"{short}={token(user[field])}")
    for category in user.get("taste") or ():
        parts.append(f"taste={token(category)}")
    if user.get("user_id"):  # (`model.user_id_feature`) crossed with the item: this user's own tastes
        parts.append(f"id={id_token(user['user_id'])}")
    if len(parts) == 1:
        parts.append("anonymous")
    if context:
        parts.append("|Context")
        for key in sorted(context):
            feature = _value_feature(key, context[key])
            if feature:
                parts.append(feature)
    if recent:
        parts.append("|Recent")
        for category in recent.get("cats", ()):
            parts.append(f"cat={token(category)}")
        for key in ("len", "since"):
            if key in recent:
                parts.append(f"{key}={recent[key]}")
    return " ".join(parts)


def at_position(action: str, position: int | None) -> str:
    """The action line as it is learned: with the slate position it was shown at (`|Xpos`,
    crossed with nothing) from position 2 on. Scoring leaves it out, so every candidate is
    scored as if at the top: a click at position 8 counts for more than one at position 1,
    and an item is not judged worse for having been shown low (position bias).

    >>> at_position("|Item id=i3", 1), at_position("|Item id=i3", 4)
    ('|Item id=i3', '|Item id=i3 |Xpos p4')
    """
    return action if not position or position <= 1 else f"{action} |Xpos p{int(position)}"


def with_label(action: str, cost: float, probability: float) -> str:
    """The action line labelled for learning: `0:cost:probability |Item ...`."""
    return f"0:{cost!r}:{probability!r} {action}"
