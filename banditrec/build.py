"""`banditrec build`: catalog + interaction log -> embeddings -> Annoy version -> Redis.

Items upserted through `PUT /items` since the last build are folded in (the catalog change
stream is read up to a cursor that the new version records), so a rebuild never loses them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from banditrec.config import Config, to_dict
from banditrec.errors import DataError
from bandit.features import item_line
from retrieval.bundle import current_path, write_bundle
from retrieval.data import Interactions, read_catalog, read_interactions, read_users
from retrieval.demo import generate_world
from retrieval.embeddings import (fit_item_embeddings, popularity, user_tastes, user_vectors)
from store.redis_store import Store, stream_id

log = logging.getLogger(__name__)


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
    """True when an index version exists and Redis holds the user data of that version."""
    path = current_path(config.data.path)
    return path is not None and store.get_meta("build") == path.name


def run_build(config: Config, store: Store, *, catalog: Path, users: Path | None = None,
              interactions: Path | None = None, now: float | None = None, progress: bool = True) -> dict:
    """Build a new index version and write user vectors and popularity. Returns a summary."""
    t0 = time.perf_counter()
    items = {i["item_id"]: i for i in read_catalog(catalog)}
    items, cursor = _fold_upserts(items, store, config)
    items = list(items.values())
    if not items:
        raise DataError(f"{catalog} has no items (an empty catalog needs no build: start the service "
                        "and add items with PUT /items)")
    profiles = read_users(users) if users else {}
    events = read_interactions(interactions) if interactions else Interactions.from_rows([])
    now = float(now if now is not None else time.time())
    log.info("read %d items, %d profiles, %d interactions in %.1f s", len(items), len(profiles), len(events),
             time.perf_counter() - t0)

    t1 = time.perf_counter()
    embedder, vectors, engagement = fit_item_embeddings(items, events, config.embedding, now,
                                                        seed=config.index.build_seed)
    log.info("embedded %d items (dim %d) in %.1f s", len(items), vectors.shape[1], time.perf_counter() - t1)

    t2 = time.perf_counter()
    meta = {"built_at": now, "catalog_cursor": cursor, "n_interactions": len(events),
            "sources": {"catalog": str(catalog), "users": str(users or ""), "interactions": str(interactions or "")}}
    path = write_bundle(config.data.path, items=items, vectors=vectors, lines=[item_line(i) for i in items],
                        embedder=embedder, meta=meta, n_trees=config.index.n_trees,
                        seed=config.index.build_seed, progress=progress)
    log.info("wrote index %s (%d trees) in %.1f s", path.name, config.index.n_trees, time.perf_counter() - t2)

    t3 = time.perf_counter()
    written = store.put_users(tqdm(_user_records(events, engagement, vectors, items, profiles, config, path.name),
                                   total=len(set(events.user_ids) | set(profiles)), desc="users -> redis",
                                   unit="user", disable=not progress, mininterval=1.0))
    pop = popularity(engagement)
    store.put_popularity({items[r]["item_id"]: float(pop[r]) for r in np.flatnonzero(pop > 0)})
    store.put_meta("build", path.name)
    log.info("wrote %d users and popularity of %d items in %.1f s", written, int((pop > 0).sum()),
             time.perf_counter() - t3)
    return {"version": path.name, "items": len(items), "users": written, "interactions": len(events),
            "seconds": round(time.perf_counter() - t0, 2)}


def _fold_upserts(items: dict[str, dict], store: Store, config: Config) -> tuple[dict[str, dict], str]:
    """The file is the catalog; `PUT /items` changes made since the last build override it, and
    items that exist only through the API are kept. Returns the items and the stream cursor."""
    previous = current_path(config.data.path)
    since = stream_id(json.loads((previous / "meta.json").read_text()).get("catalog_cursor", "0-0")) \
        if previous else (0, 0)
    in_file = set(items)
    cursor = "0-0"
    for cursor, item, _ in store.iter_items():
        if item["item_id"] not in in_file or stream_id(cursor) > since:
            items[item["item_id"]] = item
    return items, cursor


def _user_records(events: Interactions, engagement, vectors, items, profiles, config, version):
    """(user_id, fields) for every user with history or a profile. A vector is tagged with the
    index version whose space it lives in; the service ignores vectors of another version."""
    uvecs = user_vectors(engagement, vectors)
    tastes = user_tastes(engagement, [i["category"] for i in items], config.embedding.taste_categories)
    counts = np.bincount(events.user, minlength=len(events.user_ids)) if len(events) else []
    for u, user_id in enumerate(events.user_ids):
        fields = {"n": int(counts[u]), "taste": tastes[u], **profiles.get(user_id, {})}
        if uvecs[u].any():
            fields["vector"] = uvecs[u]
            fields["build"] = version
        yield user_id, fields
    seen = set(events.user_ids)
    for user_id, profile in profiles.items():
        if user_id not in seen:
            yield user_id, dict(profile)
