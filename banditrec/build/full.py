"""A full build: catalog + interactions (files and what the API received) -> embeddings ->
a new index version in a new embedding space; user vectors, popularity and quality in Redis;
the warm start. Safe while the service runs: users are written first, CURRENT moves last."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bandit.features import item_line
from bandit.linear import hash_lines
from banditrec.build.inputs import fold_upserts, read_all_interactions, still_there, stored_profiles
from banditrec.build.lock import BuildLock
from banditrec.build.popularity import popularity_prior, write_holdout_popularity, write_popularity, write_quality
from banditrec.config import Config
from banditrec.errors import DataError
from banditrec.warmstart import warm_start
from retrieval.bundle import current_path, publish_bundle, read_items, read_meta, write_bundle
from retrieval.data import Interactions, read_catalog, read_users
from retrieval.embeddings import fit_item_embeddings, popularity, user_tastes, user_vectors
from store import Store

log = logging.getLogger("banditrec.build")


def is_built(config: Config, store: Store) -> bool:
    """True when an index version exists and Redis holds the user data of its embedding space."""
    path = current_path(config.data.path)
    return path is not None and store.get_meta("space") == read_meta(path).get("space")


def run_build(config: Config, store: Store, *, catalog: Path | None = None, users: Path | None = None,
              interactions: Path | None = None, now: float | None = None, progress: bool = True,
              wait_s: float = 60.0, threads: int = 1) -> dict:
    """Full build: a new index version in a new embedding space, users and popularity in Redis.
    Without a `catalog` file it refits what the service has: the served items, and every item,
    profile and event received through the API. `threads`: a sentence model's threads (0: one
    per core, for a build that has the machine; 1 inside a serving process)."""
    with BuildLock(store, wait_s=wait_s):
        return _full_build(config, store, catalog, users, interactions, now, progress, threads)


def _full_build(config, store, catalog, users, interactions, now, progress, threads) -> dict:
    t0 = time.perf_counter()
    served = current_path(config.data.path)
    if catalog is None and served is not None:  # a refit: the last full build's files still count
        sources = read_meta(served).get("sources", {})
        users = users or still_there(sources.get("users"), "users")
        interactions = interactions or still_there(sources.get("interactions"), "interactions")
    given = read_catalog(catalog) if catalog else read_items(served) if served else []
    items, cursor = fold_upserts({i["item_id"]: i for i in given}, store, config)
    items = [i for i in items.values() if not i.get("deleted")]
    if not items and catalog:
        raise DataError(f"{catalog} has no items (an empty catalog needs no build: start the service "
                        "and add items with PUT /items)")
    if not items:
        raise DataError("nothing to build: no --catalog file, and no items were received through PUT /items")
    profiles = read_users(users) if users else {}
    stream_events = store.events_added()  # read before the stream: what arrives meanwhile counts for the next refit
    events, n_file = read_all_interactions(store, interactions)
    now = float(now if now is not None else time.time())
    log.info("read %d items, %d profiles, %d interactions (file and event stream) in %.1f s", len(items),
             len(profiles), len(events), time.perf_counter() - t0)

    t1 = time.perf_counter()
    embedder, vectors, engagement = fit_item_embeddings(items, events, config.embedding, now,
                                                        seed=config.index.build_seed, progress=progress,
                                                        threads=threads)
    log.info("embedded %d items (dim %d) in %.1f s", len(items), vectors.shape[1], time.perf_counter() - t1)

    t2 = time.perf_counter()
    previous = current_path(config.data.path)
    previous_space = read_meta(previous).get("space") if previous else None
    meta = {"built_at": now, "catalog_cursor": cursor, "full_cursor": cursor, "n_interactions": len(events),
            "stream_events": stream_events, "full_built_at": now,
            "sources": {"catalog": str(catalog or ""), "users": str(users or ""),
                        "interactions": str(interactions or "")}}
    prior = popularity_prior(popularity(engagement))
    lines = [item_line(i) for i in items]
    path = write_bundle(config.data.path, items=items, vectors=vectors, lines=lines, features=hash_lines(lines),
                        embedder=embedder, meta=meta,
                        n_trees=config.index.n_trees, seed=config.index.build_seed, kind=config.index.kind,
                        nlist=config.index.nlist, progress=progress,
                        publish=False, popularity=prior)
    log.info("wrote index %s (%s) in %.1f s", path.name, config.index.kind, time.perf_counter() - t2)

    # Users first, in the new space (the previous space stays for services still serving it);
    # CURRENT moves last, so no service swaps to a version whose users are not written yet.
    t3 = time.perf_counter()
    spaces = json.loads(store.get_meta("spaces") or "[]")
    drop = [s for s in spaces if s not in (previous_space, path.name)]
    profiles = {**stored_profiles(store, events.user_ids, profiles), **profiles}
    uvecs = user_vectors(engagement, vectors)
    tastes = user_tastes(engagement, [i["category"] for i in items], config.embedding.taste_categories)
    records = _user_records(events, uvecs, tastes, profiles)
    total = len(set(events.user_ids) | set(profiles))
    written = store.put_users(tqdm(records, total=total, desc="users -> redis", unit="user",
                                   disable=not progress, mininterval=1.0), space=path.name, drop_spaces=drop)
    store.put_meta("spaces", json.dumps([s for s in (previous_space, path.name) if s]))
    n_segments = write_popularity(store, engagement, items, events, profiles, config)
    write_quality(store, items, events)
    if config.experiment.holdout_share > 0:
        write_holdout_popularity(store, items, events, n_file, config, now)
    warm_start(config, store, events, items=items, engagement=engagement, item_vectors=vectors,
               profiles=profiles, progress=progress)
    store.put_meta("space", path.name)
    publish_bundle(config.data.path, path, config.index.keep_versions)
    log.info("wrote %d users and popularity (global + %d segments), published %s in %.1f s", written,
             n_segments, path.name, time.perf_counter() - t3)
    return {"version": path.name, "items": len(items), "users": written, "interactions": len(events),
            "seconds": round(time.perf_counter() - t0, 2)}


def _user_records(events: Interactions, uvecs, tastes, profiles):
    """(user_id, fields) for every user with history or a profile."""
    counts = np.bincount(events.user, minlength=len(events.user_ids)) if len(events) else []
    last = np.full(len(events.user_ids), -np.inf)
    if len(events):
        np.maximum.at(last, events.user, events.timestamp)
    for u, user_id in enumerate(events.user_ids):
        fields = {"n": int(counts[u]), "last": float(last[u]), "taste": tastes[u], **profiles.get(user_id, {})}
        if uvecs[u].any():
            fields["vector"] = uvecs[u]
        yield user_id, fields
    seen = set(events.user_ids)
    for user_id, profile in profiles.items():
        if user_id not in seen:
            yield user_id, dict(profile)
