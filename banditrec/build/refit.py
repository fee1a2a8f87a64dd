"""The service refits its embeddings without an operator: when enough events arrived since the
last full build (or enough time passed and some did), a full build from what it received."""

from __future__ import annotations

import logging
import time

from banditrec.build.full import run_build
from banditrec.config import Config
from retrieval.bundle import current_path, read_meta
from store import Store

log = logging.getLogger("banditrec.build")


def refit_due(config: Config, store: Store, now: float | None = None) -> str | None:
    """Why a running service should refit its embeddings now (None: it should not): enough
    events arrived since the last full build, relative to what that build read, or enough
    time passed and some did. Events are counted by a counter that only grows (the stream
    itself is trimmed at `realtime.events_maxlen`); a build from before that counter existed
    only refits by age."""
    cfg = config.index
    current = current_path(config.data.path)
    meta = read_meta(current)
    added, before = store.events_added(), meta.get("stream_events")
    if before is None and meta.get("n_interactions", 0) > 0:  # an older build: how many it read is unknown
        new, grown = added, False
    else:
        new = added - (before or 0) if added >= (before or 0) else added  # (fewer: Redis lost its data)
        grown = new >= cfg.refit_growth * meta.get("n_interactions", 0)
    if new < cfg.refit_min_events:
        return None
    if grown:
        return f"{new} events since the last full build ({meta.get('n_interactions', 0)} then)"
    age = (time.time() if now is None else now) - meta.get("full_built_at", meta.get("built_at", 0.0))
    if cfg.refit_interval_s > 0 and age >= cfg.refit_interval_s:
        return f"{new} events and {age / 3600:.1f} h since the last full build"
    return None


class Refitter:
    """The service's own refit: when `refit_due` says so, a full build from what it received
    (the served catalog, every item, profile and event through the API, and the files the
    last full build read, if they are still there). A failed attempt is not retried for
    `index.refit_interval_s` (an hour when that is 0): a full build's CPU every minute would
    cost more than a stale embedding. Raises what the build raised (the caller logs and
    counts it)."""

    def __init__(self, config: Config, store: Store, clock=time.time, build=run_build):
        """`build`: `run_build`, or one with its signature that runs it elsewhere (`build.apart`)."""
        self.config, self.store, self.clock, self.build = config, store, clock, build
        self.failed_at: float | None = None

    def __call__(self) -> dict | None:
        now = self.clock()
        if self.failed_at is not None and now - self.failed_at < (self.config.index.refit_interval_s or 3600.0):
            return None
        reason = refit_due(self.config, self.store, now=now)
        if reason is None:
            return None
        log.info("refitting the embeddings: %s", reason)
        try:
            summary = self.build(self.config, self.store, now=now, progress=False, wait_s=0.0)
        except Exception:
            self.failed_at = now
            raise
        self.failed_at = None
        return summary
