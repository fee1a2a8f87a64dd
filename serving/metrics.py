"""Prometheus metrics (`GET /metrics`), the one place that talks to prometheus_client.

Under gunicorn every worker is its own process: `banditrec serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory, each process writes its samples there, and
`/metrics` (whichever worker answers) adds up all of them. Without that variable (tests,
`flask run`) the process's own registry is served.

What is measured: per-stage latency of /recommend (the request's lap timer) and per-route
latency; decisions by strategy and arm; impressions, explored and fresh impressions (their
shares are the ratios); rewards by outcome; events; Redis failures; failed background
runs by task; loads of the item-counts mirror by outcome; plus, computed when
scraped, the model version, the reward-stream backlog after the model's cursor and the
learn lag (age of the oldest reward not yet learned).
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from serving.experiment import TREATMENT
from serving.stages import Laps

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

STAGE = Histogram("banditrec_recommend_stage_seconds", "Time per stage of POST /recommend", ["stage"],
                  buckets=_BUCKETS)
REQUEST = Histogram("banditrec_request_seconds", "Time per request by route and status class", ["route", "status"],
                    buckets=_BUCKETS)
DECISIONS = Counter("banditrec_decisions_total", "Decisions served, by strategy and experiment arm",
                    ["strategy", "arm"])
IMPRESSIONS = Counter("banditrec_impressions_total", "Items served, by arm", ["arm"])
EXPLORED = Counter("banditrec_explored_impressions_total", "Items served that were not the exploit choice", ["arm"])
FRESH = Counter("banditrec_fresh_impressions_total", "Items served that were fresh (boosted)", ["arm"])
REWARDS = Counter("banditrec_rewards_total", "Rewards received, by outcome", ["outcome"])
EVENTS = Counter("banditrec_events_total", "Interaction events recorded, by type", ["type"])
REDIS_ERRORS = Counter("banditrec_redis_errors_total", "Redis calls that failed (connection or timeout)")
BACKGROUND_FAILURES = Counter("banditrec_background_failures_total",
                              "Background runs that failed or were skipped (snapshot, adoption, rebuild, ...), by task",
                              ["task"])
ITEM_COUNTS_LOADS = Counter("banditrec_item_counts_loads_total",
                            "Background loads of every item's counts into a worker's mirror, by outcome "
                            "(merged, discarded: the catalog or counts moved on during the scan, failed)",
                            ["outcome"])
LINEAR_DECLINED = Counter("banditrec_linear_scoring_declined_total",
                          "Models adopted whose weights could not be read for direct scoring (scored through VW's "
                          "parser instead)")
MODEL_VERSION = Gauge("banditrec_served_model_version", "Model version served by this process",
                      multiprocess_mode="liveall")


def observe_recommend(body: dict, laps: Laps) -> None:
    for stage, seconds in laps.stages.items():
        STAGE.labels(stage).observe(seconds)
    arm = body.get("arm", TREATMENT)
    DECISIONS.labels(body.get("strategy", "unknown"), arm).inc()
    items = body.get("items", [])
    IMPRESSIONS.labels(arm).inc(len(items))
    EXPLORED.labels(arm).inc(sum(1 for i in items if i.get("explored")))
    FRESH.labels(arm).inc(sum(1 for i in items if i.get("fresh")))
    MODEL_VERSION.set(body.get("model_version") or 0)


def serves_no_requests() -> None:
    """For a process that serves no requests (gunicorn's master, the separate learner): drop the
    live gauges' file that importing this module made under its pid, so that
    `banditrec_served_model_version` has a series per serving worker and none at 0 for it. Its
    values are only ever made again by a process of another pid (a forked worker)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def observe_request(route: str, status: int, seconds: float) -> None:
    REQUEST.labels(route, f"{status // 100}xx").observe(seconds)


class LearningCollector:
    """Gauges read when scraped: the model version, how far learning is behind the stream and
    how many rewards could not be learned."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        store, learner = self.service.store, self.service.learner
        version = GaugeMetricFamily("banditrec_model_version", "Newest model version (snapshot) in Redis")
        backlog = GaugeMetricFamily("banditrec_reward_backlog", "Rewards in the stream after the model's cursor "
                                                                "(counted up to 1000)")
        lag = GaugeMetricFamily("banditrec_learn_lag_seconds", "Age of the oldest reward not yet learned (0: none)")
        dead = GaugeMetricFamily("banditrec_dead_letters", "Rewards set aside because they could not be learned "
                                                           "(`banditrec dead-letters` lists them)")
        try:
            progress = None if self.service.learns else store.learner_progress()
            cursor = learner.cursor if progress is None else progress.get("cursor", "0-0")
            pending, oldest = store.reward_backlog(cursor, 1000)
            version.add_metric([], max(store.latest_version(), learner.version))
            backlog.add_metric([], pending)
            lag.add_metric([], max(0.0, time.time() - oldest) if oldest is not None else 0.0)
            dead.add_metric([], store.dead_letter_count())
        except Exception:  # Redis away: the gauges are left out, redis errors say why
            return []
        return [version, backlog, lag, dead]


def exposition(service) -> tuple[bytes, str]:
    """The metrics text for one scrape: every process's samples under gunicorn, else this one's."""
    text = generate_latest(_registry())
    learning = CollectorRegistry()
    learning.register(LearningCollector(service))
    return text + generate_latest(learning), CONTENT_TYPE_LATEST


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile from cumulative histogram buckets [(upper bound, count)], interpolated
    linearly inside the bucket it falls in (as Prometheus' histogram_quantile does)."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = upper, count
    return lower


def summary(service) -> dict:
    """What the dashboard shows, as JSON: totals by arm, exploration and fresh shares, latency
    percentiles of POST /recommend, rewards, Redis errors, model version and learn lag."""
    totals: dict[str, dict] = {}
    buckets: list[tuple[float, float]] = []
    for family in _registry().collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name in ("banditrec_impressions_total", "banditrec_explored_impressions_total",
                        "banditrec_fresh_impressions_total"):
                kind = name.removeprefix("banditrec_").removesuffix("_total")
                arm = totals.setdefault(labels.get("arm", TREATMENT), {})
                arm[kind] = arm.get(kind, 0.0) + value
            elif name == "banditrec_decisions_total":
                arm = totals.setdefault(labels.get("arm", TREATMENT), {})
                arm["decisions"] = arm.get("decisions", 0.0) + value
                if labels.get("strategy") == "degraded":
                    arm["degraded"] = arm.get("degraded", 0.0) + value
            elif name == "banditrec_request_seconds_bucket" and labels.get("route") == "POST /recommend":
                buckets.append((float(labels["le"]), value))
            elif name in ("banditrec_rewards_total", "banditrec_redis_errors_total"):
                key = name.removeprefix("banditrec_").removesuffix("_total")
                totals.setdefault("_", {})[key] = totals.get("_", {}).get(key, 0.0) + value
    merged: dict[float, float] = {}
    for upper, count in buckets:  # one series per status class: add them up per bound
        merged[upper] = merged.get(upper, 0.0) + count
    ordered = sorted(merged.items())
    overall = totals.pop("_", {})
    arms = {name: {"decisions": int(t.get("decisions", 0)), "impressions": int(t.get("impressions", 0)),
                   "degraded": int(t.get("degraded", 0)),
                   "explored_share": (t.get("explored_impressions", 0) / t["impressions"]
                                      if t.get("impressions") else None),
                   "fresh_share": t.get("fresh_impressions", 0) / t["impressions"] if t.get("impressions") else None}
            for name, t in totals.items()}
    learning = {}
    for family in LearningCollector(service).collect():
        learning[family.name.removeprefix("banditrec_")] = family.samples[0].value if family.samples else None
    q = {f"p{int(p * 100)}": (None if (v := _quantile(ordered, p)) is None else round(v * 1000, 2))
         for p in (0.5, 0.95, 0.99)}
    return {"arms": arms, "recommend_latency_ms": q, "requests": int(ordered[-1][1]) if ordered else 0,
            "rewards": int(overall.get("rewards", 0)), "redis_errors": int(overall.get("redis_errors", 0)),
            "served_model_version": service.learner.version, **learning, "time": time.time()}


def count_redis_failure(exc) -> None:
    REDIS_ERRORS.inc()
