"""Vowpal Wabbit text features for users, context and items.

Namespaces (VW pairs them by first letter): `User` (profile, taste), `Context` (request
context), `Recent` (the live session: recent categories, length, time since the last
event), `Item` (id, category, attributes; cached per item), `Pop` (the item's popularity
at the last build, 0..1), `Sim` (the retrieval similarity between the user's vector and
the item). Values from clients are sanitised:
whitespace, `|` and `:` cannot reach VW's parser.

>>> shared_line({"age_group": "25-34", "taste": ["shoes"]}, {"device": "mobile", "hour": 21})
'shared |User age=25-34 taste=shoes |Context device=mobile hour=21'
>>> item_line({"item_id": "i3", "category": "shoes", "attributes": {"price": 59.0}})
'|Item id=i3 cat=shoes price=5'
>>> action_line('|Item id=i3', 0.83)
'|Item id=i3 |Sim s:0.8300'
"""

from __future__ import annotations

import hashlib
import math
import re

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


def item_line(item: dict, popularity: float = 0.0) -> str:
    """The cached per-item part of an action line. `popularity` (0..1, from the last full
    build) is a prior the model can weight from its first rewards; new items have none."""
    parts = [f"|Item id={id_token(item['item_id'])}"]
    if item.get("category"):
        parts.append(f"cat={token(item['category'])}")
    for key, value in sorted((item.get("attributes") or {}).items()):
        feature = _value_feature(key, value)
        if feature:
            parts.append(feature)
    line = " ".join(parts)
    return f"{line} |Pop p:{popularity:.4f}" if popularity > 0 else line


def action_line(cached_item_line: str, sim: float | None) -> str:
    """An item's full action line for one request: cached features + request similarity."""
    if sim is None:
        return cached_item_line
    return f"{cached_item_line} |Sim s:{sim:.4f}"


def shared_line(user: dict | None, context: dict, recent: dict | None = None) -> str:
    """The per-request shared features: user profile and taste, request context, live session."""
    parts = ["shared |User"]
    user = user or {}
    for field, short in _PROFILE:
        if user.get(field):
            parts.append(f"{short}={token(user[field])}")
    for category in user.get("taste") or ():
        parts.append(f"taste={token(category)}")
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


def with_label(action: str, cost: float, probability: float) -> str:
    """The action line labelled for learning: `0:cost:probability |Item ...`."""
    return f"0:{cost!r}:{probability!r} {action}"
