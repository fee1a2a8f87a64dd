"""An incremental build: the items added, changed or deleted through the API since the served
version, folded into a new index version in the same embedding space (no refit, users
untouched)."""

from __future__ import annotations

import logging
import time

import numpy as np

from bandit.features import item_line
from bandit.linear import hash_lines
from banditrec.build.lock import BuildLock
from banditrec.config import Config
from retrieval.bundle import current_path, read_attributes, read_items, read_meta, write_bundle
from retrieval.catalog import UNTRAINED
from retrieval.embeddings import ItemEmbedder
from store import Store

log = logging.getLogger("banditrec.build")


def run_incremental(config: Config, store: Store, progress: bool = False) -> dict | None:
    """Fold API changes since the served version into a new index version (same space).
    Returns a summary, or None when there was nothing to fold or another build is running."""
    with BuildLock(store, required=False) as lock:
        return _incremental_build(config, store, progress) if lock.held else None


def pending_changes(config: Config, store: Store) -> bool:
    """Whether items were added, changed or deleted through the API since the served version
    (what `run_incremental` would fold): one stream read of one entry."""
    return bool(store.read_items(_cursor(read_meta(current_path(config.data.path))), count=1))


def _cursor(meta: dict) -> str:
    """The catalog stream's position the served version was built up to."""
    return meta.get("catalog_cursor", "0-0")


def _incremental_build(config: Config, store: Store, progress: bool) -> dict | None:
    t0 = time.perf_counter()
    current = current_path(config.data.path)
    meta = read_meta(current)
    changes = list(store.iter_items(_cursor(meta)))
    if not changes:
        return None
    if current is not None:
        items = read_items(current)
        prior = np.array(read_attributes(current)[4])
        vectors = np.load(current / "vectors.npy")
        embedder = ItemEmbedder.load(current / "embedder.npz")
        space = meta.get("space", current.name)
    else:  # the first version of a catalog that grew through the API
        items, vectors = [], np.zeros((0, config.embedding.dim), np.float32)
        embedder, space = ItemEmbedder.untrained(config.embedding), UNTRAINED
        prior = np.zeros(0)
    rows = {item["item_id"]: r for r, item in enumerate(items)}
    extra: dict[str, tuple[dict, np.ndarray | None]] = {}
    for _, item, vector, vspace in changes:
        rows.pop(item["item_id"], None)
        extra.pop(item["item_id"], None)
        if not item.get("deleted"):  # a vector embedded while another space was served is embedded again
            extra[item["item_id"]] = (item, vector if vector is not None and vspace == space else None)
    again = [item_id for item_id, (_, vector) in extra.items() if vector is None]
    if again:  # in one batch: a sentence model encodes a batch far faster than one item at a time
        for item_id, vector in zip(again, embedder.embed([extra[i][0] for i in again], progress=progress)):
            extra[item_id] = (extra[item_id][0], vector)
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
    lines = [item_line(i) for i in items]
    path = write_bundle(config.data.path, items=items, vectors=vectors, lines=lines, features=hash_lines(lines),
                        embedder=embedder, meta=new_meta,
                        n_trees=config.index.n_trees, seed=config.index.build_seed, kind=config.index.kind,
                        nlist=config.index.nlist, progress=progress,
                        keep=config.index.keep_versions, popularity=prior)
    if current is None:
        store.put_meta("space", space)
    log.info("incremental index %s: %d items (%d changes folded) in %.1f s", path.name, len(items),
             len(changes), time.perf_counter() - t0)
    return {"version": path.name, "items": len(items), "changes": len(changes),
            "seconds": round(time.perf_counter() - t0, 2)}
