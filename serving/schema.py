"""Request bodies, validated. Every rejection names the field, what was expected and what came."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from banditrec.errors import InvalidRequest
from retrieval.data import check_id
from serving.records import Preferences

EVENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_CONTEXT_KEYS = 64
MAX_EXCLUDE = 10_000


@dataclass(frozen=True)
class RecommendRequest:
    user_id: str
    context: dict
    k: int
    exclude: frozenset
    event_id: str | None
    baseline: tuple[str, ...] | None = None
    explain: bool = False
    test: bool = False  # test traffic (the dashboard's try-it panel): answered, not learned, not counted


@dataclass(frozen=True)
class FeedbackRequest:
    event_id: str
    item_id: str | None
    reward: float | None
    seen: tuple[str, ...] = ()


def _object(body, what: str) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest(f"{what} body must be a JSON object, got {type(body).__name__}")
    return body


def _unknown(body: dict, known: set[str]) -> None:
    extra = set(body) - known
    if extra:
        raise InvalidRequest(f"unknown field(s) {', '.join(sorted(map(str, extra)))}; "
                             f"known: {', '.join(sorted(known))}")


def _event_id(value, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not EVENT_ID.fullmatch(value):
        raise InvalidRequest(f"event_id must be 1-128 characters of [A-Za-z0-9_.-], got {_short(value)}")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_context(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"context must be an object, got {_short(value)}")
    if len(value) > MAX_CONTEXT_KEYS:
        raise InvalidRequest(f"context has {len(value)} keys, must have <= {MAX_CONTEXT_KEYS}")
    for key, v in value.items():
        if not key or len(key) > 64:
            raise InvalidRequest(f"context key {_short(key)} must have 1-64 characters")
        if isinstance(v, str):
            if len(v) > 256:
                raise InvalidRequest(f"context.{key} has {len(v)} characters, must have <= 256")
        elif isinstance(v, float) and not math.isfinite(v):
            raise InvalidRequest(f"context.{key} == {v!r}, must be finite")
        elif not (v is None or isinstance(v, (bool, int, float))):
            raise InvalidRequest(f"context.{key} must be a string, number, boolean or null, got {_short(v)}")
    return value


def parse_recommend(body, max_k: int) -> RecommendRequest:
    body = _object(body, "recommend")
    _unknown(body, {"user_id", "context", "k", "exclude", "event_id", "baseline", "explain", "test"})
    user_id = check_id(body.get("user_id"), "user_id")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int):
        raise InvalidRequest(f"k must be an integer, got {_short(k)}")
    if k < 1:
        raise InvalidRequest(f"k == {k}, must be >= 1")
    if k > max_k:
        raise InvalidRequest(f"k == {k}, must be <= {max_k}")
    exclude = body.get("exclude")
    exclude = [] if exclude is None else exclude
    if not isinstance(exclude, list):
        raise InvalidRequest(f"exclude must be a list of item ids, got {_short(exclude)}")
    if len(exclude) > MAX_EXCLUDE:
        raise InvalidRequest(f"exclude has {len(exclude)} ids, must have <= {MAX_EXCLUDE}")
    for item_id in exclude:
        check_id(item_id, "each exclude entry")
    baseline = body.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, list) or len(baseline) > 1000:
            raise InvalidRequest(f"baseline must be a list of at most 1000 item ids, got {_short(baseline)}")
        for item_id in baseline:
            check_id(item_id, "each baseline entry")
        baseline = tuple(dict.fromkeys(baseline))  # each item once, first position kept
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise InvalidRequest(f"explain must be true or false, got {_short(explain)}")
    test = body.get("test", False)
    if not isinstance(test, bool):
        raise InvalidRequest(f"test must be true or false, got {_short(test)}")
    return RecommendRequest(user_id, parse_context(body.get("context")), k, frozenset(exclude),
                            _event_id(body.get("event_id"), required=False), baseline, explain, test)


def parse_feedback(body, reward_min: float, reward_max: float) -> FeedbackRequest:
    """A reward for one item of a decision, and/or the items the client saw (`seen`)."""
    body = _object(body, "feedback")
    _unknown(body, {"event_id", "item_id", "reward", "seen"})
    event_id = _event_id(body.get("event_id"), required=True)
    seen = body.get("seen")
    if seen is not None:
        if not isinstance(seen, list) or not 1 <= len(seen) <= 10_000:
            raise InvalidRequest(f"seen must be a list of 1 to 10000 item ids, got {_short(seen)}")
        for item_id in seen:
            check_id(item_id, "each seen entry")
    if seen is not None and "item_id" not in body and "reward" not in body:
        return FeedbackRequest(event_id, None, None, tuple(seen))
    item_id = check_id(body.get("item_id"), "item_id")
    reward = body.get("reward")
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise InvalidRequest(f"reward must be a number, got {_short(reward)}")
    reward = float(reward)
    if not math.isfinite(reward):
        raise InvalidRequest(f"reward == {reward!r}, must be finite")
    if not reward_min <= reward <= reward_max:
        raise InvalidRequest(f"reward == {reward!r}, must be between {reward_min!r} and {reward_max!r}")
    return FeedbackRequest(event_id, item_id, reward, tuple(seen or ()))


EVENT_FIELDS = {"user_id", "item_id", "type", "timestamp", "value", "event_id"}


@dataclass(frozen=True)
class EventRequest:
    user_id: str
    item_id: str
    type: str
    timestamp: float | None
    value: float | None
    event_id: str | None = None  # the client's id of this event: a retry of it is recorded once


def parse_event(body, event_types: tuple[str, ...]) -> EventRequest:
    body = _object(body, "event")
    _unknown(body, EVENT_FIELDS)
    user_id = check_id(body.get("user_id"), "user_id")
    item_id = check_id(body.get("item_id"), "item_id")
    kind = body.get("type")
    if kind not in event_types:
        raise InvalidRequest(f"type must be one of {', '.join(event_types)}, got {_short(kind)}")
    timestamp = body.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp) \
                or not 0 <= timestamp < 1e11:
            raise InvalidRequest(f"timestamp must be unix seconds (0 <= t < 1e11), got {_short(timestamp)}")
        timestamp = float(timestamp)
    value = body.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= 1e9:
            raise InvalidRequest(
                f"value must be a number between 0 and 1e9 (a price, a dwell time), got {_short(value)}")
        value = float(value)
    return EventRequest(user_id, item_id, kind, timestamp, value, _event_id(body.get("event_id"), required=False))


MAX_PREFERRED = 200  # ids or categories per list of a user's preferences


def parse_preferences(value) -> Preferences:
    """`preferences` of `PUT /users/{id}`: lists of liked categories, liked items, disliked items."""
    body = _object(value, "preferences")
    _unknown(body, set(Preferences.lists()))
    lists = []
    for name in Preferences.lists():
        entries = body.get(name)
        entries = [] if entries is None else entries
        if not isinstance(entries, list) or len(entries) > MAX_PREFERRED:
            raise InvalidRequest(f"preferences.{name} must be a list of at most {MAX_PREFERRED}, got {_short(entries)}")
        for entry in entries:
            if name == "liked_categories":
                if not isinstance(entry, str) or not entry or len(entry) > 256:
                    raise InvalidRequest(f"each of preferences.liked_categories must be a category name (1-256 "
                                         f"characters), got {_short(entry)}")
            else:
                check_id(entry, f"each of preferences.{name}")
        lists.append(tuple(dict.fromkeys(entries)))  # each once, in the order given
    return Preferences(*lists)
