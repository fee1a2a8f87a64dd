"""A seeded synthetic shop: catalog, user profiles, an interaction log, and the hidden truth.

Items have latent vectors (category centre + sub-style + noise) and a hidden quality;
their text and attributes are noisy views of the category and sub-style. Users belong to
demographic segments whose category tastes differ, and their latent taste is a mixture of
category centres. Clicks follow a logistic model of user x item affinity, item quality and
context (device x category). Exposure is skewed (a few items are seen a lot), so the log
has realistic popularity. The same (seed, sizes, now) always gives the same world.

>>> w = generate_world(n_items=50, n_users=10, n_categories=4, seed=1, now=1_700_000_000)
>>> len(w.items), len(w.users), w.items[0]["item_id"], sorted(w.items[0])[:3]
(50, 10, 'i0', ['attributes', 'category', 'description'])
>>> p = w.click_probability(0, [0, 1, 2]); bool(((p > 0) & (p < 1)).all())
True
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DAY = 86400.0
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55+")
LOCATIONS = ("DE", "FR", "US", "GB", "ES", "IT", "NL", "PL")
SIGNUP_SOURCES = ("ads", "organic", "referral", "social")
DEVICES = ("mobile", "desktop", "tablet")
COLORS = ("black", "white", "red", "blue", "green", "grey", "navy", "beige", "pink", "olive",
          "brown", "yellow")
ADJECTIVES = ("classic", "modern", "compact", "deluxe", "everyday", "premium", "vintage", "smart",
              "light", "sturdy", "soft", "bold", "minimal", "handmade", "eco", "urban", "rugged",
              "sleek", "cosy", "bright")
GENERAL_WORDS = ("quality", "design", "great", "gift", "perfect", "daily", "use", "durable", "new",
                 "favourite", "style", "comfort", "value", "easy", "care", "made", "with", "for",
                 "and", "the", "best", "choice", "feel", "look", "simple", "fresh", "size", "fit")
CATEGORIES = (
    ("shoes", ("sneaker", "boot", "sandal", "loafer", "trainer", "heel")),
    ("bags", ("backpack", "tote", "clutch", "satchel", "duffel", "wallet")),
    ("books", ("novel", "cookbook", "memoir", "guide", "anthology", "atlas")),
    ("kitchen", ("skillet", "kettle", "blender", "knife", "teapot", "grater")),
    ("toys", ("puzzle", "robot", "kite", "doll", "blocks", "spinner")),
    ("garden", ("hose", "planter", "shears", "rake", "trowel", "lantern")),
    ("audio", ("headphones", "speaker", "turntable", "earbuds", "amplifier", "microphone")),
    ("fitness", ("dumbbell", "mat", "kettlebell", "treadmill", "rope", "band")),
    ("beauty", ("serum", "lipstick", "moisturiser", "palette", "perfume", "cleanser")),
    ("outdoor", ("tent", "sleeping bag", "compass", "headlamp", "hammock", "canteen")),
    ("games", ("board game", "controller", "card deck", "chess set", "dice set", "console")),
    ("coffee", ("espresso", "grinder", "french press", "beans", "mug", "dripper")),
    ("pets", ("leash", "collar", "pet bed", "chew toy", "feeder", "scratcher")),
    ("office", ("notebook", "fountain pen", "desk lamp", "stapler", "planner", "organiser")),
    ("jackets", ("parka", "windbreaker", "blazer", "raincoat", "fleece", "bomber")),
    ("watches", ("chronograph", "smartwatch", "diver", "field watch", "dress watch", "strap")),
    ("music", ("guitar", "ukulele", "keyboard", "drum pad", "violin", "harmonica")),
    ("bikes", ("helmet", "bike light", "saddle", "pump", "lock", "jersey")),
    ("baby", ("stroller", "onesie", "rattle", "bib", "carrier", "blanket")),
    ("home", ("cushion", "rug", "vase", "candle", "throw", "mirror")),
)
_SYLLABLES = ("ka", "lo", "mi", "ren", "to", "sa", "vel", "du", "pa", "ri", "no", "zan", "qu", "el",
              "fi", "mor", "ta", "bex", "ul", "sin")


@dataclass
class World:
    """Generated data plus the hidden truth that produced it."""

    items: list[dict]
    users: list[dict]
    interactions: list[tuple[str, str, str, int]]  # (user_id, item_id, type, timestamp)
    item_latent: np.ndarray = field(repr=False)
    item_quality: np.ndarray = field(repr=False)
    item_category: np.ndarray = field(repr=False)
    user_latent: np.ndarray = field(repr=False)
    device_effect: np.ndarray = field(repr=False)  # (n_categories, n_devices) logit offsets
    base_logit: float = -3.0
    affinity_weight: float = 5.0
    quality_weight: float = 0.8

    def click_logit(self, user_index: int, item_indices, context: dict | None = None) -> np.ndarray:
        items = np.asarray(item_indices, dtype=np.int64)
        logit = (self.base_logit
                 + self.affinity_weight * (self.item_latent[items] @ self.user_latent[user_index])
                 + self.quality_weight * self.item_quality[items])
        device = (context or {}).get("device")
        if device in DEVICES:
            logit = logit + self.device_effect[self.item_category[items], DEVICES.index(device)]
        return logit

    def click_probability(self, user_index: int, item_indices, context: dict | None = None) -> np.ndarray:
        """The true probability that user `user_index` clicks each item in this context."""
        return 1.0 / (1.0 + np.exp(-self.click_logit(user_index, item_indices, context)))

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write items.jsonl, users.jsonl and interactions.csv (the `banditrec build` formats)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {name: directory / name for name in ("items.jsonl", "users.jsonl", "interactions.csv")}
        _write_jsonl(paths["items.jsonl"], self.items)
        _write_jsonl(paths["users.jsonl"], self.users)
        with open(paths["interactions.csv"], "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "item_id", "type", "timestamp"])
            writer.writerows(self.interactions)
        return paths


def generate_world(n_items: int = 20_000, n_users: int = 2_000, n_categories: int = 20,
                   seed: int = 7, now: float = 1_764_200_000, mean_events_per_user: float = 40.0,
                   history_days: float = 90.0, latent_dim: int = 16, n_styles: int = 4) -> World:
    """Generate a world. `now` (unix seconds) anchors every timestamp, so output is reproducible."""
    rng = np.random.default_rng(seed)
    categories = _categories(n_categories, rng)
    n_cat = len(categories)

    # Latent geometry: category centres, sub-styles inside each category, item noise.
    centres = _unit(rng.normal(size=(n_cat, latent_dim)))
    styles = _unit(rng.normal(size=(n_cat, n_styles, latent_dim)))
    cat_share = rng.dirichlet(np.full(n_cat, 2.0))
    item_cat = rng.choice(n_cat, size=n_items, p=cat_share)
    item_style = rng.integers(0, n_styles, size=n_items)
    item_latent = _unit(centres[item_cat] + 0.6 * styles[item_cat, item_style]
                        + 0.35 * rng.normal(size=(n_items, latent_dim)))

    brands = [f"{_word(rng, 2).capitalize()}" for _ in range(max(8, n_cat * 3))]
    brand_quality = rng.normal(0.0, 0.4, size=len(brands))
    brand_home = rng.integers(0, n_cat, size=len(brands))
    style_words = [[[_word(rng, 2) for _ in range(8)] for _ in range(n_styles)] for _ in range(n_cat)]
    cat_words = [[_word(rng, 3) for _ in range(12)] for _ in range(n_cat)]

    # Brands mostly sell in their home category; the rest is random.
    item_brand = np.where(rng.random(n_items) < 0.7, -1, rng.integers(0, len(brands), size=n_items))
    for c in range(n_cat):
        home = np.flatnonzero(brand_home == c)
        mask = (item_brand == -1) & (item_cat == c)
        item_brand[mask] = rng.choice(home, size=mask.sum()) if len(home) else rng.integers(0, len(brands), mask.sum())
    item_quality = rng.normal(0.0, 0.5, size=n_items) + brand_quality[item_brand]

    age_days = np.where(rng.random(n_items) < 0.03, rng.uniform(0, 7, n_items), rng.uniform(7, 730, n_items))
    published = (now - age_days * DAY).astype(np.int64)
    in_stock = rng.random(n_items) < 0.95
    price_scale = rng.lognormal(3.0, 0.8, size=n_cat)

    items = []
    for i in range(n_items):
        c, s = item_cat[i], item_style[i]
        name, nouns = categories[c]
        words = list(rng.choice(style_words[c][s], size=rng.integers(3, 7)))
        words += list(rng.choice(cat_words[c], size=rng.integers(2, 5)))
        words += list(rng.choice(GENERAL_WORDS, size=rng.integers(3, 8)))
        rng.shuffle(words)
        items.append({
            "item_id": f"i{i}",
            "category": name,
            "title": f"{rng.choice(ADJECTIVES)} {brands[item_brand[i]]} {rng.choice(nouns)}",
            "description": " ".join(words),
            "attributes": {"brand": brands[item_brand[i]], "color": str(rng.choice(COLORS)),
                           "price": round(float(price_scale[c] * rng.lognormal(0.0, 0.4)), 2)},
            "in_stock": bool(in_stock[i]),
            "published_at": int(published[i]),
        })

    # Users: segments (age group) have their own category tastes; locations tilt them.
    age_pref = rng.dirichlet(np.full(n_cat, 0.4), size=len(AGE_GROUPS))
    loc_tilt = rng.dirichlet(np.full(n_cat, 1.0), size=len(LOCATIONS))
    user_age = rng.integers(0, len(AGE_GROUPS), size=n_users)
    user_loc = rng.integers(0, len(LOCATIONS), size=n_users)
    user_src = rng.integers(0, len(SIGNUP_SOURCES), size=n_users)
    user_latent = np.empty((n_users, latent_dim))
    for u in range(n_users):
        prior = 0.8 * age_pref[user_age[u]] + 0.2 * loc_tilt[user_loc[u]]
        mix = rng.dirichlet(8.0 * prior + 0.05)
        user_latent[u] = mix @ centres + 0.4 * mix @ styles[:, rng.integers(n_styles)] \
            + 0.25 * rng.normal(size=latent_dim)
    user_latent = _unit(user_latent)
    users = [{"user_id": f"u{u}", "age_group": AGE_GROUPS[user_age[u]],
              "location": LOCATIONS[user_loc[u]], "signup_source": SIGNUP_SOURCES[user_src[u]]}
             for u in range(n_users)]

    world = World(items, users, [], item_latent, item_quality, item_cat, user_latent,
                  device_effect=rng.normal(0.0, 0.4, size=(n_cat, len(DEVICES))))
    world.interactions = _interactions(world, rng, published, now, mean_events_per_user, history_days)
    return world


def _interactions(world: World, rng, published, now, mean_events, history_days):
    """Browse skewed by visibility, view by affinity, click by the true model, then buy."""
    n_items = len(world.items)
    visibility = rng.normal(0.0, 1.3, size=n_items) + 0.5 * world.item_quality
    age_days = (now - published) / DAY
    weight = np.exp(visibility) * np.clip(age_days / 30.0, 0.05, 1.0)  # new items are seen less
    cdf = np.cumsum(weight / weight.sum())
    start = now - history_days * DAY
    sigma = 0.8
    rows = []
    for u in range(len(world.users)):
        n_events = max(1, int(round(rng.lognormal(np.log(mean_events) - sigma**2 / 2, sigma))))
        pool = np.unique(np.searchsorted(cdf, rng.random(min(400, 4 * n_events + 20)) * cdf[-1]))
        pool = np.minimum(pool, n_items - 1)
        affinity = world.item_latent[pool] @ world.user_latent[u]
        p_view = np.exp(3.0 * affinity)
        viewed = pool[rng.choice(len(pool), size=n_events, p=p_view / p_view.sum())]
        device = rng.choice(DEVICES, size=n_events)
        user_id = f"u{u}"
        for item, dev in zip(viewed, device):
            t0 = max(start, float(published[item]))
            ts = int(rng.uniform(t0, now))
            item_id = f"i{item}"
            rows.append((user_id, item_id, "view", ts))
            if rng.random() < world.click_probability(u, [item], {"device": dev})[0]:
                ts = min(int(now), ts + int(rng.integers(2, 60)))  # never after now
                rows.append((user_id, item_id, "click", ts))
                if rng.random() < 0.3:
                    ts = min(int(now), ts + int(rng.integers(10, 600)))
                    rows.append((user_id, item_id, "add_to_cart", ts))
                    if rng.random() < 0.5:
                        ts = min(int(now), ts + int(rng.integers(10, 900)))
                        rows.append((user_id, item_id, "purchase", ts))
    rows.sort(key=lambda r: r[3])
    return rows


def _categories(n: int, rng) -> list[tuple[str, tuple[str, ...]]]:
    out = list(CATEGORIES[:n])
    for i in range(len(out), n):
        out.append((f"{_word(rng, 2)}{i}", tuple(_word(rng, 2) for _ in range(6))))
    return out


def _word(rng, syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES, size=syllables))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
