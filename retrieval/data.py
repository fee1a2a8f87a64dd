"""The input formats of `banditrec build`, read and validated with line numbers in errors.

Catalog (JSONL, one item per line; only `item_id` is required)::

    {"item_id": "i3", "category": "shoes", "title": "Trail runner", "description": "...",
     "attributes": {"brand": "x", "price": 59.0}, "in_stock": true, "published_at": 1764200000}

Users (JSONL, optional)::

    {"user_id": "u42", "age_group": "25-34", "location": "DE", "signup_source": "ads"}

Interactions (CSV with a header; `value` is optional and unused by the build)::

    user_id,item_id,type,timestamp
    u42,i3,click,1764200000

`type` is one of view, click, add_to_cart, purchase; `timestamp` is unix seconds.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from banditrec.errors import DataError, InvalidRequest
from retrieval.config import EVENT_TYPES

MAX_ID_LENGTH = 256
PROFILE_FIELDS = ("age_group", "location", "signup_source")


def check_id(value, name: str, error=InvalidRequest) -> str:
    """An id is a non-empty string of at most 256 printable characters."""
    if not isinstance(value, str) or not value:
        raise error(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise error(f"{name} has {len(value)} characters, must have <= {MAX_ID_LENGTH}")
    if not value.isprintable():
        raise error(f"{name} must be printable text without control characters")
    return value


def normalise_item(doc, *, item_id: str | None = None, error=InvalidRequest) -> dict:
    """A catalog record with every field present and of the right type.

    >>> normalise_item({"item_id": "i1", "category": "shoes"})["in_stock"]
    True
    """
    if not isinstance(doc, dict):
        raise error(f"an item must be a JSON object, got {type(doc).__name__}")
    known = {"item_id", "category", "title", "description", "attributes", "in_stock", "published_at"}
    unknown = set(doc) - known
    if unknown:
        raise error(f"unknown item field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    item_id = check_id(item_id if item_id is not None else doc.get("item_id"), "item_id", error)
    out = {"item_id": item_id}
    for key, limit in (("category", 256), ("title", 1024), ("description", 20_000)):
        value = doc.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise error(f"{key} must be a string, got {value!r}")
        if len(value) > limit:
            raise error(f"{key} has {len(value)} characters, must have <= {limit}")
        out[key] = value
    attributes = doc.get("attributes")
    attributes = {} if attributes is None else attributes
    if not isinstance(attributes, dict):
        raise error(f"attributes must be an object, got {attributes!r}")
    if len(attributes) > 64:
        raise error(f"attributes has {len(attributes)} entries, must have <= 64")
    for key, value in attributes.items():
        if len(key) > 64:
            raise error(f"attribute name has {len(key)} characters, must have <= 64")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise error(f"attributes.{key} == {value!r}, must be finite")
        elif isinstance(value, str):
            if len(value) > 256:
                raise error(f"attributes.{key} has {len(value)} characters, must have <= 256")
        else:
            raise error(f"attributes.{key} must be a string, number or boolean, got {value!r}")
    out["attributes"] = attributes
    in_stock = doc.get("in_stock", True)
    if not isinstance(in_stock, bool):
        raise error(f"in_stock must be true or false, got {in_stock!r}")
    out["in_stock"] = in_stock
    published = doc.get("published_at", 0)
    if published is None:
        published = 0
    if isinstance(published, bool) or not isinstance(published, (int, float)) or not math.isfinite(published) \
            or not 0 <= published < 1e11:
        raise error(f"published_at must be unix seconds (0 <= t < 1e11), got {published!r}")
    out["published_at"] = int(published)
    return out


def normalise_profile(doc, error=InvalidRequest) -> dict:
    if not isinstance(doc, dict):
        raise error(f"a user profile must be a JSON object, got {type(doc).__name__}")
    out = {}
    for key in PROFILE_FIELDS:
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 64:
            raise error(f"{key} must be a string of <= 64 characters, got {value!r}")
        out[key] = value
    return out


def segment_of(profile: dict, fields: tuple[str, ...]) -> str | None:
    """The demographic segment of a profile: its values of `fields`, or None without any.

    >>> segment_of({"age_group": "25-34", "location": "DE"}, ("age_group", "location"))
    'age_group=25-34|location=DE'
    """
    parts = [f"{f}={profile[f]}" for f in fields if profile.get(f)]
    return "|".join(parts) if parts else None


def read_catalog(path: str | Path) -> list[dict]:
    """Items in file order; a repeated item_id keeps its last record."""
    items: dict[str, dict] = {}
    for lineno, doc in _jsonl(path):
        try:
            item = normalise_item(doc, error=DataError)
        except DataError as exc:
            raise DataError(f"{path}:{lineno}: {exc.message}") from None
        items.pop(item["item_id"], None)
        items[item["item_id"]] = item
    return list(items.values())


def read_users(path: str | Path) -> dict[str, dict]:
    users = {}
    for lineno, doc in _jsonl(path):
        try:
            user_id = check_id(doc.get("user_id") if isinstance(doc, dict) else None, "user_id", DataError)
            users[user_id] = normalise_profile(doc, DataError)
        except DataError as exc:
            raise DataError(f"{path}:{lineno}: {exc.message}") from None
    return users


@dataclass
class Interactions:
    """An interaction log as parallel arrays (`user_ids` and `item_ids` are the vocabularies)."""

    user_ids: list[str]
    user: np.ndarray       # int index into user_ids
    item_id: list[str]     # per row
    kind: np.ndarray       # int index into EVENT_TYPES
    timestamp: np.ndarray  # float unix seconds

    def __len__(self) -> int:
        return len(self.user)

    def rows(self) -> list[tuple[str, str, str, float]]:
        return [(self.user_ids[u], i, EVENT_TYPES[k], t)
                for u, i, k, t in zip(self.user.tolist(), self.item_id, self.kind.tolist(), self.timestamp.tolist())]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str, float]]) -> "Interactions":
        users: dict[str, int] = {}
        u, items, kinds, ts = [], [], [], []
        type_index = {t: i for i, t in enumerate(EVENT_TYPES)}
        for user_id, item_id, kind, timestamp in rows:
            u.append(users.setdefault(user_id, len(users)))
            items.append(item_id)
            kinds.append(type_index[kind])
            ts.append(float(timestamp))
        return cls(list(users), np.asarray(u, dtype=np.int64), items,
                   np.asarray(kinds, dtype=np.int64), np.asarray(ts, dtype=np.float64))


def read_interactions(path: str | Path) -> Interactions:
    def rows():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"user_id", "item_id", "type", "timestamp"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"{path}: header must name user_id,item_id,type,timestamp; "
                                f"missing {', '.join(sorted(missing))}")
            for row in reader:
                lineno = reader.line_num  # DictReader skips blank lines; count them anyway
                kind = row["type"]
                if kind not in EVENT_TYPES:
                    raise DataError(f"{path}:{lineno}: type == {kind!r}, must be one of {', '.join(EVENT_TYPES)}")
                try:
                    ts = float(row["timestamp"])
                except (TypeError, ValueError):
                    raise DataError(
                        f"{path}:{lineno}: timestamp == {row['timestamp']!r}, must be unix seconds") from None
                if not math.isfinite(ts):
                    raise DataError(f"{path}:{lineno}: timestamp must be finite")
                if not row["user_id"] or not row["item_id"]:
                    raise DataError(f"{path}:{lineno}: user_id and item_id must be non-empty")
                yield row["user_id"], row["item_id"], kind, ts

    return Interactions.from_rows(rows())


def _jsonl(path):
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
