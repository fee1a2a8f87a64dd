"""The service: the parts a request needs, opened once and shared by the routes.

`Service.open(config)` connects to Redis (or starts the embedded one), loads the current
index version, restores the newest model snapshot and replays the rewards it has not
seen, then starts the snapshot thread. The HTTP routes, the simulator and the benchmarks
all call the same plain functions with a Service.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from banditrec.config import Config
from bandit.features import item_line
from bandit.strategies import STRATEGIES, Strategy
from bandit.vw import VWModel
from retrieval.bundle import current_path, load_bundle
from retrieval.catalog import Catalog
from retrieval.embeddings import ItemEmbedder
from serving.learner import Learner, Snapshotter
from store.connection import EmbeddedRedis, connect
from store.redis_store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class Service:
    config: Config
    store: Store
    catalog: Catalog
    embedder: ItemEmbedder
    model: VWModel
    strategy: Strategy
    learner: Learner
    snapshotter: Snapshotter | None = None
    embedded: EmbeddedRedis | None = None
    owns_client: bool = False
    popular_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _popular_at: float = 0.0
    _synced_at: float = 0.0
    _sync_lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    @classmethod
    def open(cls, config: Config, *, store: Store | None = None, start_threads: bool = True) -> "Service":
        """Open everything the routes need. Pass `store` to use an existing connection."""
        embedded, owns_client = None, store is None
        if store is None:
            client, embedded = connect(config.redis, config.data.path)
            store = Store(client, config.redis.prefix)
        bundle_path = current_path(config.data.path)
        bundle = load_bundle(bundle_path, config.index.search_k) if bundle_path else None
        if bundle is not None and bundle.meta["dim"] != config.embedding.dim:
            raise ValueError(f"index {bundle_path} has dimension {bundle.meta['dim']}, config says "
                             f"{config.embedding.dim}: rebuild with `banditrec build`")
        embedder = bundle.embedder if bundle else ItemEmbedder.untrained(config.embedding)
        catalog = Catalog(bundle, config.embedding.dim, item_line)

        snapshot = store.latest_snapshot()
        if snapshot is None:
            model, cursor, version = VWModel(config.model.vw_args()), "0-0", 0
        else:
            blob, meta = snapshot
            model, cursor, version = VWModel(config.model.vw_args(), blob=blob), meta["cursor"], meta["version"]
        learner = Learner(store, model, config.feedback, cursor=cursor, version=version)
        strategy = STRATEGIES[config.exploration.strategy](config.exploration.selected)
        service = cls(config, store, catalog, embedder, model, strategy, learner, embedded=embedded,
                      owns_client=owns_client)
        service.sync_catalog(force=True)
        replayed = learner.catch_up()
        if replayed:
            log.info("replayed %d rewards newer than model snapshot v%d", replayed, version)
        service.refresh_popular(force=True)
        if start_threads:
            service.snapshotter = Snapshotter(learner, config.snapshot)
            service.snapshotter.start()
        log.info("serving %d items (index %s), model v%d, strategy %s", len(catalog),
                 bundle.version if bundle else "none", learner.version, strategy.name)
        return service

    def user_vector(self, user: dict | None) -> np.ndarray | None:
        """The user's long-term vector if it lives in the served index's space, else None."""
        bundle = self.catalog.bundle
        if not user or "vector" not in user or bundle is None or user.get("build") != bundle.version:
            return None
        vector = user["vector"]
        return vector if len(vector) == self.catalog.dim and np.any(vector) else None

    def sync_catalog(self, force: bool = False, interval_s: float = 0.5) -> None:
        """Apply items upserted by any process since the last sync (at most every interval;
        a failed attempt also waits an interval, so an outage does not slow every request)."""
        now = time.monotonic()
        if not force and now - self._synced_at < interval_s:
            return
        with self._sync_lock:
            self._synced_at = now
            for sid, item, vector in self.store.iter_items(self.catalog.cursor):
                self.catalog.upsert(item, vector, cursor=sid)

    def refresh_popular(self, force: bool = False, interval_s: float = 60.0) -> np.ndarray:
        """Rows of the globally most popular items, cached in-process for `interval_s`."""
        if force or time.monotonic() - self._popular_at > interval_s:
            self._popular_at = time.monotonic()  # also after a failure: retry in an interval
            n = self.config.retrieval.n_candidates * 2
            self.popular_rows = self.catalog.rows_for(item_id for item_id, _ in self.store.top_popular(n))
        return self.popular_rows

    def close(self) -> None:
        """Stop the snapshot thread, save a final snapshot, release the embedded Redis."""
        if self._closed:
            return
        self._closed = True
        if self.snapshotter is not None:
            self.snapshotter.stop()
            self.snapshotter = None
        try:
            self.learner.catch_up()
            self.learner.snapshot(self.config.snapshot.keep)
        except StoreError as exc:
            log.warning("final snapshot not saved: %s", exc)
        self.model.close()
        if self.catalog.bundle is not None:
            self.catalog.bundle.index.close()
        if self.owns_client:
            self.store.client.close()
        if self.embedded is not None:
            self.embedded.close()
            self.embedded = None
