"""The serving paths' settings: real-time state, filters, cold start, inactive users, fresh items,
diversity, learning, feedback, the decision log, experiments and snapshots."""

from __future__ import annotations

import re
from dataclasses import dataclass

from banditrec.checks import check_scalar
from banditrec.errors import ConfigError
from retrieval.config import EVENT_TYPES


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
    event_id_ttl_s: float = 3600.0  # how long a retried event_id is recognised (a small hash per event_id)
    exposure_flush_s: float = 0.0   # slates' exposure counted in batches this often (0: with each decision)

    def __post_init__(self):
        check_scalar(self.recent_n, "realtime.recent_n", int, min=1, max=10_000)
        check_scalar(self.recent_ttl_s, "realtime.recent_ttl_s", float, min=1.0)
        check_scalar(self.session_half_life_s, "realtime.session_half_life_s", float, min=1.0)
        check_scalar(self.session_weight, "realtime.session_weight", float, min=0.0, max=1.0)
        check_scalar(self.ema_alpha, "realtime.ema_alpha", float, min=0.0, max=1.0)
        check_scalar(self.trending_half_life_s, "realtime.trending_half_life_s", float, min=60.0)
        check_scalar(self.trending_keep, "realtime.trending_keep", int, min=10)
        check_scalar(self.events_maxlen, "realtime.events_maxlen", int, min=1000)
        check_scalar(self.event_id_ttl_s, "realtime.event_id_ttl_s", float, min=60.0, max=30 * 86400.0)
        check_scalar(self.exposure_flush_s, "realtime.exposure_flush_s", float, min=0.0, max=60.0)


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

    @property
    def attribution_s(self) -> float:
        """How long a click reported to `/feedback` and the same click sent to `/events` may be
        apart to be counted once, as the service's (the reward wait and ten minutes)."""
        return self.reward_wait_s + 600.0


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
class CanaryConfig:
    """Canary rollout of a model snapshot or an exploration config (`banditrec canary start`):
    the share of the bandit's users it gets unless `--share` says otherwise, how often each
    serving process and the learner re-read it and the live exploration, and the automatic
    rule (`serving.canary`): once both arms have `min_decisions` decisions, abort when the
    canary's CTR is worse with 95 % confidence, promote when it is not worse than `max_loss`
    (relative) with 95 % confidence."""

    share: float = 0.1
    check_s: float = 5.0
    auto: bool = False
    min_decisions: int = 2000
    max_loss: float = 0.02

    def __post_init__(self):
        check_scalar(self.share, "canary.share", float, min=0.0, max=0.5, min_exclusive=True)
        check_scalar(self.check_s, "canary.check_s", float, min=0.1)
        check_scalar(self.auto, "canary.auto", bool)
        check_scalar(self.min_decisions, "canary.min_decisions", int, min=1)
        check_scalar(self.max_loss, "canary.max_loss", float, min=0.0, max=1.0, max_exclusive=True)


@dataclass(frozen=True)
class SnapshotConfig:
    """Model snapshots: written every `interval_s` or `every_n_updates`, and on shutdown."""

    interval_s: float = 30.0
    every_n_updates: int = 10_000
    keep: int = 10
    startup_replay: int = 100_000

    def __post_init__(self):
        check_scalar(self.interval_s, "snapshot.interval_s", float, min=0.1)
        check_scalar(self.every_n_updates, "snapshot.every_n_updates", int, min=1)
        check_scalar(self.keep, "snapshot.keep", int, min=1, max=1000)
        check_scalar(self.startup_replay, "snapshot.startup_replay", int, min=0)
