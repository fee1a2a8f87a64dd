"""The records that cross modules: an item of a decided slate, a decision as logged for its
rewards, and a reward-stream entry. Each has `to_json` (the dict the store keeps) and
`from_json`; the stored keys are short and stay as they were written, so decisions and rewards
written by an earlier release are read the same way. In the code, `strategy` is always the
exploration strategy; where the candidates came from (personalized, cold_start, popularity,
apprentice, pregenerated) is the `source` (stored, and answered, as "strategy" or "path")."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Mapping

import numpy as np

EARLIEST = "earliest"  # `feedback.aggregation` of records written before it was recorded
RESPONSE_KEYS = ("item_id", "position", "score", "probability", "explored", "fresh", "explain")


@dataclass(frozen=True)
class Preferences:
    """What a user said at onboarding (`PUT /users/{id}` `preferences`): categories and items
    they like, items they do not. Until their own history takes over, they give the user a
    starting vector and tastes (`serving.userstate.preference_vector`, `preference_taste`).

    >>> p = Preferences.from_json({"liked_categories": ["jazz"], "liked_items": ["i1"]})
    >>> p.named, bool(p), bool(Preferences())
    (frozenset({'i1'}), True, False)
    """

    liked_categories: tuple[str, ...] = ()
    liked_items: tuple[str, ...] = ()
    disliked_items: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.liked_categories or self.liked_items)

    @classmethod
    def lists(cls) -> tuple[str, ...]:
        """The names of the three lists, in order (the JSON keys as well)."""
        return tuple(f.name for f in fields(cls))

    @property
    def named(self) -> frozenset[str]:
        """The items the user named: known to them, never recommended to them."""
        return frozenset(self.liked_items) | frozenset(self.disliked_items)

    def to_json(self) -> dict:
        return {name: list(getattr(self, name)) for name in self.lists()}

    @classmethod
    def from_json(cls, data: Mapping | None) -> "Preferences":
        data = data or {}
        return cls(*(tuple(data.get(name) or ()) for name in cls.lists()))


@dataclass(frozen=True)
class UserState:
    """What the request path knows about a user (`store.user_state` reads it in one round trip):
    profile fields, a long-term vector per embedding space, top categories (`taste`), the
    interaction count, the time of the last event, the recent events (dicts: item `i`, type
    `t`, time `ts`, category `c`) and the items not to show again (`seen`). An unknown user is
    `UserState()`.

    >>> state = UserState.from_json({"profile": {"location": "FR"}, "n": 3, "seen": {"i1"}, "recent": []})
    >>> state.n, state.known, "i1" in state.seen, UserState().known
    (3, True, True, False)
    """

    profile: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    vectors: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    taste: tuple[str, ...] = ()
    n: int = 0
    last: float | None = None
    recent: tuple[Mapping, ...] = ()
    seen: frozenset[str] = frozenset()
    known: bool = False  # the store had something on this user
    preferences: Preferences = Preferences()

    @classmethod
    def from_json(cls, data: Mapping | None) -> "UserState":
        if not data:
            return cls()
        preferences = Preferences.from_json(data.get("preferences"))
        return cls(profile=MappingProxyType(dict(data.get("profile") or {})),
                   vectors=MappingProxyType(dict(data.get("vectors") or {})), taste=tuple(data.get("taste") or ()),
                   n=int(data.get("n") or 0), last=data.get("last"), recent=tuple(data.get("recent") or ()),
                   seen=frozenset(data.get("seen") or ()) | preferences.named, known=True, preferences=preferences)


@dataclass(frozen=True)
class SlateItem:
    """One position of a decided slate: the item, its mean score, the probability it was drawn
    with given the items above it, whether that draw explored (was not the exploit choice),
    whether it was a fresh item, its action features as scored (what learning needs), and with
    `explain` the model's per-feature breakdown.

    >>> item = SlateItem("i3", 1, 0.25, 0.9, False, False, "|Item id=i3")
    >>> SlateItem.from_json(item.to_json()) == item, tuple(item.response()) == RESPONSE_KEYS[:-1]
    (True, True)
    """

    item_id: str
    position: int
    score: float
    probability: float
    explored: bool
    fresh: bool
    action: str
    explain: list | None = None

    def to_json(self) -> dict:
        out = {"item_id": self.item_id, "position": self.position, "score": self.score,
               "probability": self.probability, "explored": self.explored, "fresh": self.fresh,
               "action": self.action}
        if self.explain is not None:
            out["explain"] = self.explain
        return out

    def response(self) -> dict:
        """The item as `POST /recommend` answers it (`RESPONSE_KEYS`: no action features)."""
        out = {"item_id": self.item_id, "position": self.position, "score": self.score,
               "probability": self.probability, "explored": self.explored, "fresh": self.fresh}
        if self.explain is not None:
            out["explain"] = self.explain
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> "SlateItem":
        return cls(item_id=data["item_id"], position=int(data["position"]), score=float(data["score"]),
                   probability=float(data["probability"]), explored=bool(data["explored"]),
                   fresh=bool(data["fresh"]), action=data["action"], explain=data.get("explain"))


@dataclass(frozen=True)
class Decision:
    """What a slate's rewards are joined with: when and for whom it was decided, the shared
    features, each item's (position, probability, action features), the model version that
    scored it, and how its rewards are learned (aggregation, importance weighting) as the
    config said when it was made, so a later config change does not reinterpret it."""

    ts: float
    user_id: str
    shared: str
    version: int | None
    items: Mapping[str, tuple[int, float, str]]
    strategy: str = ""                   # the exploration strategy
    source: str = ""                     # where the candidates came from (the response's "strategy")
    aggregation: str = EARLIEST
    importance_weighted: bool = True
    arm: str | None = None               # experiment arm
    experiment: str | None = None        # the experiment's salt when it was decided
    test: bool = False                   # test traffic: its rewards are acknowledged, never learned or counted
    canary: tuple[str, str] | None = None  # while a canary ran: (its id, "canary" or "current")

    def to_json(self) -> dict:
        data = {"ts": self.ts, "user_id": self.user_id, "shared": self.shared, "version": self.version,
                "strategy_name": self.strategy, "agg": self.aggregation, "iw": self.importance_weighted,
                "strategy": self.source, "arm": self.arm, "exp": self.experiment,
                "items": {item_id: list(value) for item_id, value in self.items.items()}}
        if self.test:
            data["test"] = True
        if self.canary:
            data["canary"] = list(self.canary)
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> "Decision":
        return cls(ts=data["ts"], user_id=data.get("user_id", ""), shared=data["shared"], version=data.get("version"),
                   items={item_id: tuple(value) for item_id, value in data["items"].items()},
                   strategy=data.get("strategy_name", ""), source=data.get("strategy", ""),
                   aggregation=data.get("agg", EARLIEST), importance_weighted=data.get("iw", True),
                   arm=data.get("arm"), experiment=data.get("exp"), test=data.get("test", False),
                   canary=tuple(data["canary"]) if data.get("canary") else None)


@dataclass(frozen=True)
class RewardEntry:
    """One reward in the stream, with everything learning needs from its decision. `kind` is
    "reward" (from a client), "default" (none came in time) or "final" (an aggregate)."""

    kind: str
    event_id: str
    item_id: str
    reward: float
    p: float                             # the probability the item was shown with
    position: int
    shared: str
    action: str
    decision_ts: float
    ts: float
    version: int | None
    aggregation: str = EARLIEST
    importance_weighted: bool | None = True  # None (entries older than the field): as the learner is configured

    @classmethod
    def of(cls, kind: str, event_id: str, item_id: str, reward: float, decision: Decision, now: float) -> "RewardEntry":
        position, probability, action = decision.items[item_id]
        return cls(kind, event_id, item_id, reward, probability, position, decision.shared, action, decision.ts, now,
                   decision.version, decision.aggregation, decision.importance_weighted)

    @property
    def learnable(self) -> bool:
        return _learnable(self.kind, self.aggregation)

    def to_json(self) -> dict:
        return {"kind": self.kind, "event_id": self.event_id, "item_id": self.item_id, "reward": self.reward,
                "p": self.p, "position": self.position, "shared": self.shared, "action": self.action,
                "decision_ts": self.decision_ts, "ts": self.ts, "version": self.version, "agg": self.aggregation,
                "iw": self.importance_weighted}

    @classmethod
    def from_json(cls, data: Mapping) -> "RewardEntry":
        return cls(kind=data.get("kind", "reward"), event_id=data["event_id"], item_id=data["item_id"],
                   reward=float(data["reward"]), p=float(data["p"]), position=int(data.get("position") or 1),
                   shared=data["shared"], action=data["action"], decision_ts=data.get("decision_ts", 0.0),
                   ts=data.get("ts", 0.0), version=data.get("version"), aggregation=data.get("agg", EARLIEST),
                   importance_weighted=data.get("iw"))


def is_learnable(entry: Mapping) -> bool:
    """`RewardEntry.learnable` of a stored entry, without reading the rest of it."""
    return _learnable(entry.get("kind", "reward"), entry.get("agg", EARLIEST))


def _learnable(kind: str, aggregation: str) -> bool:
    """A client's reward is learned at once under "earliest" aggregation; under sum/max only the
    "final" aggregate is; "default" rewards always are. (The learner and the off-policy
    evaluator both read the stream by this rule.)"""
    if kind == "reward":
        return aggregation == EARLIEST
    return kind in ("final", "default")
