"""`banditrec build`: catalog + interactions -> embeddings -> Annoy version -> Redis.

Two kinds of build, both safe while the service runs (it swaps to the new version):
- full: refit the embeddings from the catalog file, the interaction log and the events
  recorded by `POST /events`; write user vectors (in the new embedding space) and
  popularity to Redis. Items changed through the API since the last build are folded in.
- incremental: fold the items added, changed or deleted through the API since the served
  version into a new Annoy version, in the same embedding space (no refit, users untouched).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse
from tqdm import tqdm

from banditrec.config import ENGAGED_TYPES, EVENT_TYPES, Config, to_dict
from banditrec.errors import DataError
from banditrec.warmstart import warm_start
from bandit.features import item_line
from retrieval.bundle import current_path, publish_bundle, read_items, write_bundle
from retrieval.catalog import UNTRAINED
from retrieval.data import Interactions, read_catalog, read_interactions, read_users, segment_of
from retrieval.demo import generate_world
from retrieval.embeddings import (ItemEmbedder, fit_item_embeddings, interaction_matrix, popularity, user_tastes,
                                  user_vectors)
from serving.experiment import HOLDOUT, HOLDOUT_SCOPE, arm_of
from serving.service import BuildSteps
from store import Store, stream_id

log = logging.getLogger(__name__)
BUILD_LOCK_S = 3600.0


def demo_paths(data_dir: Path) -> dict[str, Path]:
    d = Path(data_dir) / "demo"
    return {"catalog": d / "items.jsonl", "users": d / "users.jsonl", "interactions": d / "interactions.csv"}


def ensure_demo(config: Config, now: float | None = None) -> dict[str, Path]:
    """Generate the demo data set into `<data.dir>/demo` unless it is there for this config."""
    paths = demo_paths(config.data.path)
    marker = paths["catalog"].parent / "demo.json"
    wanted = to_dict(config.demo)
    if marker.exists() and json.loads(marker.read_text()).get("demo") == wanted \
            and all(p.exists() for p in paths.values()):
        return paths
    d = config.demo
    log.info("generating demo data: %d items, %d users (seed %d)", d.n_items, d.n_users, d.seed)
    now = float(now if now is not None else time.time())
    world = generate_world(n_items=d.n_items, n_users=d.n_users, n_categories=d.n_categories, seed=d.seed,
                           now=now, mean_events_per_user=d.mean_events_per_user, history_days=d.history_days)
    world.write(paths["catalog"].parent)
    marker.write_text(json.dumps({"demo": wanted, "now": now}))
    return paths


def is_built(config: Config, store: Store) -> bool:
    """True when an index version exists and Redis holds the user data of its embedding space."""
    path = current_path(config.data.path)
    return path is not None and store.get_meta("space") == json.loads((path / "meta.json").read_text()).get("space")


class BuildLock:
    """One build at a time per deployment (service rebuilds and CLI builds alike)."""

    def __init__(self, store: Store, wait_s: float = 0.0):
        self.store, self.wait_s, self.token = store, wait_s, None

    def __enter__(self):
        deadline = time.monotonic() + self.wait_s
        while (token := self.store.acquire_lock("build", BUILD_LOCK_S)) is None:
            if time.monotonic() >= deadline:
                raise DataError("another build is running (lock 'build' in Redis); try again when it is done")
            time.sleep(0.2)
        self.token = token
        return self

    def __exit__(self, *exc):
        self.store.release_lock("build", self.token)


def run_build(config: Config, store: Store, *, catalog: Path | None = None, users: Path | None = None,
              interactions: Path | None = None, now: float | None = None, progress: bool = True,
              wait_s: float = 60.0) -> dict:
    """Full build: a new index version in a new embedding space, users and popularity in Redis.
    Without a `catalog` file it refits what the service has: the served items, and every item,
    profile and event received through the API."""
    with BuildLock(store, wait_s=wait_s):
        return _full_build(config, store, catalog, users, interactions, now, progress)


def refit_due(config: Config, store: Store, now: float | None = None) -> str | None:
    """Why a running service should refit its embeddings now (None: it should not): enough
    events arrived since the last full build, relative to what that build read, or enough
    time passed and some did. Events are counted by a counter that only grows (the stream
    itself is trimmed at `realtime.events_maxlen`); a build from before that counter existed
    only refits by age."""
    cfg = config.index
    current = current_path(config.data.path)
    meta = json.loads((current / "meta.json").read_text()) if current else {}
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

    def __init__(self, config: Config, store: Store, clock=time.time):
        self.config, self.store, self.clock = config, store, clock
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
            summary = run_build(self.config, self.store, now=now, progress=False, wait_s=0.0)
        except Exception:
            self.failed_at = now
            raise
        self.failed_at = None
        return summary


def _full_build(config, store, catalog, users, interactions, now, progress) -> dict:
    t0 = time.perf_counter()
    served = current_path(config.data.path)
    if catalog is None and served is not None:  # a refit: the last full build's files still count
        sources = json.loads((served / "meta.json").read_text()).get("sources", {})
        users = users or _still_there(sources.get("users"), "users")
        interactions = interactions or _still_there(sources.get("interactions"), "interactions")
    given = read_catalog(catalog) if catalog else read_items(served) if served else []
    items, cursor = _fold_upserts({i["item_id"]: i for i in given}, store, config)
    items = [i for i in items.values() if not i.get("deleted")]
    if not items and catalog:
        raise DataError(f"{catalog} has no items (an empty catalog needs no build: start the service "
                        "and add items with PUT /items)")
    if not items:
        raise DataError("nothing to build: no --catalog file, and no items were received through PUT /items")
    profiles = read_users(users) if users else {}
    stream_events = store.events_added()  # read before the stream: what arrives meanwhile counts for the next refit
    events, n_file = _interactions(store, interactions)
    now = float(now if now is not None else time.time())
    log.info("read %d items, %d profiles, %d interactions (file and event stream) in %.1f s", len(items),
             len(profiles), len(events), time.perf_counter() - t0)

    t1 = time.perf_counter()
    embedder, vectors, engagement = fit_item_embeddings(items, events, config.embedding, now,
                                                        seed=config.index.build_seed)
    log.info("embedded %d items (dim %d) in %.1f s", len(items), vectors.shape[1], time.perf_counter() - t1)

    t2 = time.perf_counter()
    previous = current_path(config.data.path)
    previous_space = json.loads((previous / "meta.json").read_text()).get("space") if previous else None
    meta = {"built_at": now, "catalog_cursor": cursor, "full_cursor": cursor, "n_interactions": len(events),
            "stream_events": stream_events, "full_built_at": now,
            "sources": {"catalog": str(catalog or ""), "users": str(users or ""),
                        "interactions": str(interactions or "")}}
    prior = popularity_prior(popularity(engagement))
    path = write_bundle(config.data.path, items=items, vectors=vectors,
                        lines=[item_line(i) for i in items], embedder=embedder, meta=meta,
                        n_trees=config.index.n_trees, seed=config.index.build_seed, progress=progress,
                        publish=False, popularity=prior)
    log.info("wrote index %s (%d trees) in %.1f s", path.name, config.index.n_trees, time.perf_counter() - t2)

    # Users first, in the new space (the previous space stays for services still serving it);
    # CURRENT moves last, so no service swaps to a version whose users are not written yet.
    t3 = time.perf_counter()
    spaces = json.loads(store.get_meta("spaces") or "[]")
    drop = [s for s in spaces if s not in (previous_space, path.name)]
    profiles = {**_stored_profiles(store, events.user_ids, profiles), **profiles}
    uvecs = user_vectors(engagement, vectors)
    tastes = user_tastes(engagement, [i["category"] for i in items], config.embedding.taste_categories)
    records = _user_records(events, uvecs, tastes, profiles)
    total = len(set(events.user_ids) | set(profiles))
    written = store.put_users(tqdm(records, total=total, desc="users -> redis", unit="user",
                                   disable=not progress, mininterval=1.0), space=path.name, drop_spaces=drop)
    store.put_meta("spaces", json.dumps([s for s in (previous_space, path.name) if s]))
    n_segments = _write_popularity(store, engagement, items, events, profiles, config)
    _write_quality(store, items, events)
    if config.experiment.holdout_share > 0:
        _write_holdout_popularity(store, items, events, n_file, config, now)
    warm_start(config, store, events, items=items, engagement=engagement, item_vectors=vectors,
               profiles=profiles, progress=progress)
    store.put_meta("space", path.name)
    publish_bundle(config.data.path, path, config.index.keep_versions)
    log.info("wrote %d users and popularity (global + %d segments), published %s in %.1f s", written,
             n_segments, path.name, time.perf_counter() - t3)
    return {"version": path.name, "items": len(items), "users": written, "interactions": len(events),
            "seconds": round(time.perf_counter() - t0, 2)}


def run_incremental(config: Config, store: Store, progress: bool = False) -> dict | None:
    """Fold API changes since the served version into a new Annoy version (same space).
    Returns a summary, or None when there was nothing to fold or another build is running."""
    token = store.acquire_lock("build", BUILD_LOCK_S)
    if token is None:
        return None
    try:
        return _incremental_build(config, store, progress)
    finally:
        store.release_lock("build", token)


def _incremental_build(config: Config, store: Store, progress: bool) -> dict | None:
    t0 = time.perf_counter()
    current = current_path(config.data.path)
    meta = json.loads((current / "meta.json").read_text()) if current else {}
    changes = list(store.iter_items(meta.get("catalog_cursor", "0-0")))
    if not changes:
        return None
    if current is not None:
        items = read_items(current)
        with np.load(current / "attrs.npz") as attrs:
            prior = attrs["popularity"] if "popularity" in attrs else np.zeros(len(items))
        vectors = np.load(current / "vectors.npy")
        embedder = ItemEmbedder.load(current / "embedder.npz")
        space = meta.get("space", current.name)
    else:  # the first version of a catalog that grew through the API
        items, vectors = [], np.zeros((0, config.embedding.dim), np.float32)
        embedder, space = ItemEmbedder.untrained(config.embedding), UNTRAINED
        prior = np.zeros(0)
    rows = {item["item_id"]: r for r, item in enumerate(items)}
    extra: dict[str, tuple[dict, np.ndarray]] = {}
    for _, item, vector, vspace in changes:
        rows.pop(item["item_id"], None)
        extra.pop(item["item_id"], None)
        if not item.get("deleted"):
            if vector is None or vspace != space:  # embedded while another space was served
                vector = embedder.embed([item])[0]
            extra[item["item_id"]] = (item, vector)
    kept = sorted(rows.values())
    items = [items[r] for r in kept] + [item for item, _ in extra.values()]
    if not items:
        return None
    vectors = np.vstack([vectors[kept]] + [v[None, :] for _, v in extra.values()])
    prior = np.concatenate([prior[kept], np.zeros(len(extra))])  # new items have no popularity yet
    new_meta = {"built_at": time.time(), "catalog_cursor": changes[-1][0], "incremental": True,
                "full_cursor": meta.get("full_cursor", "0-0"), "space": space,
                "n_interactions": meta.get("n_interactions", 0), "sources": meta.get("sources", {}),
                "stream_events": meta.get("stream_events", 0), "full_built_at": meta.get("full_built_at", 0.0)}
    path = write_bundle(config.data.path, items=items, vectors=vectors,
                        lines=[item_line(i) for i in items], embedder=embedder, meta=new_meta,
                        n_trees=config.index.n_trees, seed=config.index.build_seed, progress=progress,
                        keep=config.index.keep_versions, popularity=prior)
    if current is None:
        store.put_meta("space", space)
    log.info("incremental index %s: %d items (%d changes folded) in %.1f s", path.name, len(items),
             len(changes), time.perf_counter() - t0)
    return {"version": path.name, "items": len(items), "changes": len(changes),
            "seconds": round(time.perf_counter() - t0, 2)}


def popularity_prior(scores: np.ndarray) -> np.ndarray:
    """Popularity as a 0..1 feature: log-scaled, relative to the most popular item."""
    scaled = np.log1p(np.maximum(scores, 0.0))
    top = scaled.max() if len(scaled) else 0.0
    return scaled / top if top > 0 else np.zeros(len(scores))


def _fold_upserts(items: dict[str, dict], store: Store, config: Config) -> tuple[dict[str, dict], str]:
    """The file is the catalog; API changes (upserts, deletions) made since the last build
    override it, and items that exist only through the API are kept. Returns items and cursor."""
    previous = current_path(config.data.path)
    since = stream_id(json.loads((previous / "meta.json").read_text()).get("full_cursor", "0-0")) \
        if previous else (0, 0)  # the last *full* build: incremental ones did not consult the file
    in_file = set(items)
    cursor = "0-0"
    for cursor, item, _, _ in store.iter_items():
        if item["item_id"] not in in_file or stream_id(cursor) > since:
            items[item["item_id"]] = item
    return items, cursor


def _stored_profiles(store: Store, user_ids: list[str], known: dict) -> dict[str, dict]:
    """Profiles set through `PUT /users` for users the users file does not describe."""
    out = {}
    for batch in range(0, len(user_ids), 1000):
        ids = [u for u in user_ids[batch:batch + 1000] if u not in known]
        for user_id, profile in zip(ids, store.profiles(ids)):
            if profile:
                out[user_id] = profile
    return out


def _interactions(store: Store, path: Path | None) -> tuple[Interactions, int]:
    """The interaction log file (if any) followed by every event recorded through the API,
    and how many rows came from the file."""
    file_rows = read_interactions(path).rows() if path else []
    stream_rows = ((e["user_id"], e["item_id"], e["type"], e["timestamp"]) for _, e in store.iter_events())
    return Interactions.from_rows(list(file_rows) + list(stream_rows)), len(file_rows)


def _write_holdout_popularity(store: Store, items, events: Interactions, n_file: int, config: Config,
                              now: float) -> None:
    """The A/B holdout's popularity list: the file's history and the events of the holdout's
    own users, never the personalized arm's (whose clicks follow what banditrec showed
    them: a baseline fed by them would measure banditrec against itself)."""
    keep = [row for r, row in enumerate(events.rows())
            if r < n_file or arm_of(row[0], config.experiment) == HOLDOUT]
    matrix = interaction_matrix(Interactions.from_rows(keep), {item["item_id"]: r for r, item in enumerate(items)},
                                config.embedding, now)
    pop = popularity(matrix)
    store.put_popularity({items[r]["item_id"]: float(pop[r]) for r in np.flatnonzero(pop > 0)}, scope=HOLDOUT_SCOPE)


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


def _still_there(path: str | None, what: str) -> Path | None:
    """A file the last full build read, for a refit; a clear error when it is gone (a refit
    without it would drop that history from the embeddings, users and popularity)."""
    if not path or path == "None":
        return None
    if not Path(path).exists():
        raise DataError(f"the {what} file of the last full build ({path}) is gone: a refit without it would lose "
                        f"that history; run `banditrec build --catalog ... --{what} ...` with it")
    return Path(path)


def _write_quality(store: Store, items, events: Interactions) -> None:
    """Per item, its events and engagements in the history (what `POST /events` counts up)."""
    known = {item["item_id"] for item in items}
    counts, engaged = Counter(), Counter()
    for item_id, kind in zip(events.item_id, events.kind.tolist()):
        if item_id in known:
            counts[item_id] += 1
            engaged[item_id] += EVENT_TYPES[kind] in ENGAGED_TYPES
    store.put_quality({i: float(n) for i, n in counts.items()}, {i: float(n) for i, n in engaged.items() if n})


def _write_popularity(store: Store, engagement, items, events: Interactions, profiles, config) -> int:
    """Global popularity, and popularity within each demographic segment."""
    pop = popularity(engagement)
    store.put_popularity({items[r]["item_id"]: float(pop[r]) for r in np.flatnonzero(pop > 0)}, scope="global")
    segments = [segment_of(profiles.get(user_id, {}), config.cold_start.segment_fields) for user_id in events.user_ids]
    names = sorted({s for s in segments if s})
    if not names or engagement.shape[1] == 0:
        return 0
    index = {name: c for c, name in enumerate(names)}
    cols = [(u, index[s]) for u, s in enumerate(segments) if s]
    onehot = sparse.csr_matrix((np.ones(len(cols)), ([u for u, _ in cols], [c for _, c in cols])),
                               shape=(engagement.shape[1], len(names)))
    per_segment = (engagement @ onehot).tocsc()
    keep = max(1000, config.retrieval.n_candidates * 4)
    for name, c in index.items():
        column = per_segment[:, c].toarray().ravel()
        top = np.argsort(-column)[:keep]
        store.put_popularity({items[r]["item_id"]: float(column[r]) for r in top if column[r] > 0},
                             scope=f"seg:{name}")
    return len(names)


STEPS = BuildSteps(incremental=run_incremental, refitter=Refitter)  # what a running service calls (Service.open)
