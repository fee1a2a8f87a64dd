"""The service: the parts a request needs, opened once and shared by the routes.

`Service.open(config)` connects to Redis (or starts the embedded one), loads the current
index version, restores the newest model snapshot and replays the rewards it has not
seen, then starts the background tasks: model snapshots, swapping in new index versions,
folding API-added items into the index, refreshing pre-generated slates. The HTTP routes, the
simulator and the benchmarks all call the same plain functions with a Service.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from bandit.features import item_line, strip_popularity
from bandit.linear import hash_line
from bandit.strategies import Strategy
from bandit.vw import VWModel, hash_version
from banditrec.config import Config
from banditrec.errors import Unavailable
from retrieval.bundle import current_path, load_bundle
from retrieval.catalog import Catalog
from retrieval.columns import Strings
from retrieval.embeddings import ItemEmbedder
from serving import heap
from serving.background import Periodic
from serving.canary import CanaryWatch, Held
from serving.exposure import ExposureBuffer
from serving.learner import Learner
from serving.live import Exploring, LiveExploration
from serving.models import adopt_latest, make_learner
from serving.popular import PopularCache
from serving.pregen import refresh_due
from serving.ranking import Ranking
from serving.rewards import close_due
from serving.userstate import UserMemory
from store import EmbeddedRedis, Store, StoreError, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSteps:
    """What a running service asks of the build pipeline, passed in from the top
    (`banditrec.build.apart.SERVED_STEPS`, builds in processes of their own; `banditrec.build.STEPS` in
    process) so that serving never imports it: `incremental(config, store)`
    folds items added through the API into a new index version (a summary, or None when there
    was nothing to fold); `refitter(config, store, clock)` makes the callable that runs a full
    build from what the service received when one is due (a summary, or None when not due)."""

    incremental: Callable[[Config, Store], dict | None]
    refitter: Callable[..., Callable[[], dict | None]]


def load_catalog(config: Config) -> Catalog:
    """The catalog of the current index version (empty before the first build)."""
    path = current_path(config.data.path)
    bundle = load_bundle(path, config.index.search_k, config.index.exact_below, config.index.kind,
                         hashed_by=hash_version()) if path else None
    if bundle is not None and bundle.meta["dim"] != config.embedding.dim:
        raise ValueError(f"index {path} has dimension {bundle.meta['dim']}, config says "
                         f"{config.embedding.dim}: rebuild with `banditrec build`")
    if bundle is not None and bundle.lines and " |Pop " in bundle.lines[0]:  # built by an older release
        bundle.lines = Strings.of(strip_popularity(line) for line in bundle.lines)   # popularity is live now
    embedder = bundle.embedder if bundle else ItemEmbedder.untrained(config.embedding)
    if bundle is not None and bundle.features is None and len(bundle.ids):
        log.info("index %s has no hashed item features (built by an older release): candidates are scored "
                 "through VW's text parser; the next build adds them", bundle.version)
    return Catalog(bundle, config.embedding.dim, item_line, embedder, hash_line)


def current_catalog(config: Config, store: Store) -> Catalog:
    """The catalog as it is now: the current index version and every change made through the
    API since it was built."""
    catalog = load_catalog(config)
    for changes in store.item_batches(catalog.cursor):
        catalog.apply(changes)  # re-embedded in one batch per 10,000 changes
    return catalog


@dataclass
class Service:
    config: Config
    store: Store
    catalog: Catalog
    strategy: Strategy
    learner: Learner
    embedded: EmbeddedRedis | None = None
    owns_store: bool = False
    popular: PopularCache = None
    exposure: ExposureBuffer = None
    canary: CanaryWatch = None
    exploring: LiveExploration = None  # the file's exploration, or a promoted canary's (`strategy` follows it)
    users: UserMemory = field(default_factory=UserMemory)
    tasks: list[Periodic] = field(default_factory=list)
    clock: Callable[[], float] = time.time  # seconds; the simulator drives its own
    _synced_at: float = 0.0
    _sync_lock: threading.Lock = field(default_factory=threading.Lock)
    _swap_lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    build: BuildSteps | None = None  # None: no rebuilds or refits (`rebuild` and `refit` raise)
    _refitter: Callable[[], dict | None] | None = None  # made from `build` on first use

    @classmethod
    def open(cls, config: Config, *, store: Store | None = None, start_threads: bool = True,
             build: BuildSteps | None = None) -> "Service":
        """Open everything the routes need. Pass `store` to use an existing connection, and
        `build` (`BuildSteps`) for a service that folds new items into its index and
        refits its embeddings."""
        embedded, owns_store = None, store is None
        if store is None:
            store, embedded = open_store(config.redis, config.data.path)
        catalog = load_catalog(config)
        exploring = LiveExploration(config.exploration)
        try:  # a promoted exploration applies from the first request
            exploring.follow(store)
        except StoreError as exc:
            log.warning("the live exploration not read yet (retried every %g s): %s", config.canary.check_s, exc)
        strategy = exploring.now.strategy
        learner = make_learner(config, store, strategy, store.latest_snapshot())
        service = cls(config, store, catalog, strategy, learner, embedded=embedded, owns_store=owns_store,
                      build=build, exploring=exploring)
        service.users = UserMemory(config.server.user_cache_mb)
        service.popular = PopularCache(store, clock=lambda: service.clock(),  # ages on the service's clock
                                       live_weight=config.model.quality_live_weight)
        service.exposure = ExposureBuffer(store, config.realtime.exposure_flush_s)
        service.canary = CanaryWatch(service._canary_learner)
        service.sync_catalog(force=True)
        replayed = learner.catch_up(max_entries=config.snapshot.startup_replay)
        if replayed:
            log.info("replayed %d rewards newer than model snapshot v%d", replayed, learner.version)
        if start_threads:
            service.start_tasks()
        log.info("serving %d items (index %s), model v%d, strategy %s", len(catalog),
                 catalog.bundle.version if catalog.bundle else "none", learner.version, strategy.name)
        return service

    @property
    def model(self) -> VWModel:
        """The model serving now (a rollback swaps it; read it once per request)."""
        return self.learner.model

    @property
    def learns(self) -> bool:
        """True when this process learns (one worker); False when it serves a separate learner's snapshots."""
        return self.config.server.learns_inline

    def start_tasks(self) -> None:
        cfg = self.config
        self.popular.counts.start(self.catalog)  # the candidates' counts, mirrored in the background
        self._await_counts(cfg.server.counts_wait_s)  # before the other tasks: they would compete with the load
        self.popular.background = True  # popularity lists and catalog-wide numbers re-read off the request path
        self.tasks.append(Periodic("popular", self.popular.ttl_s, self.popular.refresh, jitter=0.2).start())
        self.start_exposure_flush()
        if self.learns:
            self.tasks.append(Periodic("snapshot", min(1.0, cfg.snapshot.interval_s),
                                       lambda: self.learner.maybe_snapshot(cfg.snapshot)).start())
        self.tasks.append(Periodic("index-watch", cfg.index.reload_check_s, self.reload).start())
        if cfg.index.rebuild_interval_s > 0 and self.build is not None:
            self.tasks.append(Periodic("rebuild", cfg.index.rebuild_interval_s, self.rebuild).start())
        if cfg.index.refit_check_s > 0 and self.learns and self.build is not None:  # else the learner process refits
            self.tasks.append(Periodic("refit", cfg.index.refit_check_s, self.refit).start())
        if cfg.inactive.after_s > 0:
            self.tasks.append(Periodic("pregen", min(60.0, cfg.inactive.refresh_s / 4),
                                       lambda: refresh_due(self)).start())
        if self.learns:  # else the learner process closes decisions
            self.tasks.append(Periodic("close-decisions", min(5.0, cfg.feedback.reward_wait_s / 4),
                                       lambda: close_due(self)).start())
        # jittered: workers started together would otherwise read and load each snapshot at the same moment
        self.tasks.append(Periodic("model-watch", min(5.0, cfg.snapshot.interval_s), self.adopt_newer_model,
                                   jitter=0.2).start())
        try:  # a canary running now is served from the first request
            self.watch_canary()
        except StoreError as exc:
            log.warning("canary not read yet (retried every %g s): %s", cfg.canary.check_s, exc)
        self.tasks.append(Periodic("canary", cfg.canary.check_s, self.watch_canary).start())
        trimmer = heap.trim_every(cfg.server.heap_trim_s)
        if trimmer is not None:
            self.tasks.append(trimmer)

    def _await_counts(self, timeout_s: float) -> None:
        """Take requests once this process's copy of the item counts is loaded (~3 s of CPU at 1M
        items), or after `server.counts_wait_s`. A worker that serves during the load answers
        slowly (the candidates' counts are read from Redis one request at a time) and ends with
        ~30 MB more memory of its own: Python keeps the arenas whose pools the load's passing
        objects and the requests' lasting ones came to share (1M items: a worker's own memory
        after a warm-up 107-113 MB when it served during the load, 77-81 MB when it waited).
        A load that was discarded (the counts moved on during its scan) is started again while
        the wait lasts; one that failed (Redis away) ends the wait: the first requests start another."""
        if timeout_s <= 0:
            return
        counts = self.popular.counts
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            discarded = counts.discarded
            if counts.wait(max(deadline - time.monotonic(), 0.0)):
                log.info("item counts loaded in %.1f s", time.monotonic() - started)
                return
            if counts.loading:
                log.warning("item counts still loading after %.1f s (server.counts_wait_s): serving meanwhile",
                            time.monotonic() - started)
                return
            if counts.discarded == discarded or time.monotonic() >= deadline:
                why = "discarded" if counts.discarded != discarded else "failed" if counts.failures else "not started"
                log.warning("item counts not loaded (%s): serving meanwhile, reading the candidates' counts "
                            "from Redis until a later load", why)
                return
            counts.start(self.catalog)  # discarded: load again

    def start_exposure_flush(self) -> None:
        """Count the slates' exposure in batches, off the request path (`serving.exposure`)."""
        if self.config.realtime.exposure_flush_s > 0:
            self.exposure.background = True
            self.tasks.append(Periodic("exposure", self.config.realtime.exposure_flush_s, self.exposure.flush).start())

    def adopt_newer_model(self) -> bool:
        """Serve a snapshot newer than ours. When this process learns, only it writes learner
        snapshots, so a newer one came from elsewhere: a rollback (`banditrec model rollback`)
        or a build's warm start; it is adopted, and learning goes on from its cursor (until
        then the learner writes no snapshot over it). With a separate learner, its newest
        snapshot. Requests in flight finish on the model they hold. A worker then gives the
        heap's free memory back at once (its replicas' VW copies, loaded to read their weights,
        were freed), not at the next `server.heap_trim_s`."""
        adopted = adopt_latest(self.config, self.store, self.strategy, self.learner, learns=self.learns,
                               needed=self.replicas_needed)
        if adopted and not self.learns and self.config.server.heap_trim_s > 0:
            heap.trim()
        return adopted

    def watch_canary(self) -> None:
        """Serve the canary that is running (`serving.canary`) and apply its automatic rule, then
        follow the live exploration (`serving.live`): in that order, since a promotion writes
        the live exploration before it ends the canary. A strategy is served only once the
        current model has the bootstrap replicas it needs; replicas no longer needed are
        dropped at the end."""
        try:
            self.canary.sync(self.store, self.config, grow=self._grow_replicas)
            if self.exploring.follow(self.store, prepare=self._switch_to):
                if self.canary.held is not None and self.canary.held.learner is not None:
                    self.canary.held = None  # a model canary's replicas were made for the old strategy: load it again
                    self.canary.sync(self.store, self.config, grow=self._grow_replicas)
        finally:
            self.learner.resize_replicas(self.replicas_needed(), self.config.model.vw_args())

    def _switch_to(self, found: Exploring) -> None:
        """Serve `found`'s strategy, once the model has the bootstrap replicas it needs."""
        self._grow_replicas(found.strategy.replicas)
        self.strategy = found.strategy

    def _grow_replicas(self, n: int) -> None:
        self.learner.resize_replicas(n, self.config.model.vw_args(), grow_only=True)

    def replicas_needed(self) -> int:
        """Bootstrap replicas the current model keeps: the strategy's, or an exploration
        canary's (running, or being promoted) if it needs more."""
        return max(self.strategy.replicas, self.canary.replicas() if self.canary is not None else 0)

    def _canary_learner(self, snapshot) -> Learner:
        learner = make_learner(self.config, self.store, self.strategy, snapshot)
        learner.enabled = False  # a canary's model serves as it is
        return learner

    def ranking(self, catalog: Catalog | None = None, canary: Held | None = None) -> Ranking:
        """What a decision reads, as it is now: the learner's model, replicas and version are
        read once (`adopt` swaps them), the strategy taken at the model's step. With `canary`
        (for a user in it), its model or its strategy instead."""
        learner = canary.learner if canary is not None and canary.learner is not None else self.learner
        strategy = canary.strategy if canary is not None and canary.strategy is not None else self.strategy
        model, replicas, version, total = learner.model, learner.replicas, learner.version, learner.total
        return Ranking(self.config, catalog if catalog is not None else self.catalog, self.popular,
                       strategy.at_step(total), model, replicas, version, self.store.labelled)

    def apprentice_match(self, matched: bool) -> None:
        """Apprentice mode: count whether the model's first choice matched the baseline's."""
        try:
            self.store.count_apprentice(matched)
        except StoreError:
            pass

    def sync_catalog(self, force: bool = False, interval_s: float = 0.5) -> None:
        """Apply catalog changes made by any process since the last sync (at most every interval;
        a failed attempt also waits an interval, so an outage does not slow every request)."""
        now = time.monotonic()
        if not force and now - self._synced_at < interval_s:
            return
        with self._sync_lock:
            self._synced_at = now
            catalog = self.catalog
            for changes in self.store.item_batches(catalog.cursor, fast=True):
                catalog.apply(changes)  # re-embedded in one batch per 10,000 changes

    def reload(self) -> bool:
        """Swap in the index version that CURRENT names, if it is not the one served. Requests
        in flight finish on the old version (they hold it); new ones get the new one."""
        if not self._newer_version():
            return False
        with self._swap_lock:
            if not self._newer_version():  # swapped in by another thread meanwhile (the rebuild's, the watch's)
                return False
            catalog = current_catalog(self.config, self.store)
            with self._sync_lock:
                self.catalog = catalog
        log.info("now serving index %s (%d items)", catalog.bundle.version, len(catalog))
        return True

    def _newer_version(self) -> bool:
        path = current_path(self.config.data.path)
        served = self.catalog.bundle.path if self.catalog.bundle else None
        return path is not None and path != served

    def rebuild(self) -> dict | None:
        """Fold items added through the API into a new index version, then swap it in."""
        summary = self._steps().incremental(self.config, self.store)
        if summary is not None:
            self.reload()
        return summary

    def refit(self) -> dict | None:
        """The embeddings follow the history without an operator: a full build from what the
        service received when it is due (`BuildSteps.refitter`), then swapped in. None
        when not due."""
        if self._refitter is None:
            self._refitter = self._steps().refitter(self.config, self.store, lambda: self.clock())
        summary = self._refitter()
        if summary is not None:
            self.reload()
        return summary

    def _steps(self) -> BuildSteps:
        if self.build is None:
            raise Unavailable("this service was opened without the build steps (Service.open(..., build=...)): "
                              "it cannot rebuild its index or refit its embeddings")
        return self.build

    def close(self, save: bool = True) -> None:
        """Stop background work, save a final snapshot (unless not `save`), release Redis."""
        if self._closed:
            return
        self._closed = True
        for task in self.tasks:
            task.stop()
        self.tasks.clear()
        try:
            self.exposure.flush()  # what the last second showed
        except StoreError as exc:
            log.warning("the last %d items' exposure not counted: %s", self.exposure.pending(), exc)
        if self.learns and save:
            try:
                self.learner.catch_up()
                self.learner.snapshot(self.config.snapshot.keep)
            except StoreError as exc:
                log.warning("final snapshot not saved: %s", exc)
        self.learner.model.close()
        if self.learner.replicas is not None:
            self.learner.replicas.close()
        if self.owns_store:
            self.store.close()
        if self.embedded is not None:
            self.embedded.close()
            self.embedded = None
