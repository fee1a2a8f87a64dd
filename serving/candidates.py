"""Where candidates come from: the user's vector (Annoy + fresh buffer), or popularity."""

from __future__ import annotations

import numpy as np

from banditrec.config import Config
from retrieval.catalog import Catalog
from retrieval.data import segment_of
from serving.experiment import HOLDOUT_SCOPE
from serving.popular import PopularCache


def personal(catalog: Catalog, query: np.ndarray, cfg: Config,
             popular_cache: PopularCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest items to the query vector (Annoy's top n merged with the fresh buffer's), then
    the globally most popular and the best liked items the neighbourhood missed: a taste
    vector alone would never let the bandit find what everybody likes. (Measured on real
    ratings: ranked by similarity alone, the neighbourhood did worse than random items.)"""
    rows, sims = catalog.search(query, cfg.retrieval.n_candidates, cfg.retrieval.fresh_candidates)
    n_popular, n_quality = cfg.retrieval.popular_candidates, cfg.retrieval.quality_candidates
    if popular_cache is None or n_popular + n_quality == 0:
        return rows, sims
    ids = popular_cache.ids("pop", "global", n_popular) if n_popular else []
    ids += popular_cache.best(n_quality) if n_quality else []
    extra = catalog.rows_for(ids)
    extra = _unique(extra[catalog.available(extra) & ~np.isin(extra, rows)]) if len(extra) else extra
    if not len(extra):
        return rows, sims
    extra_sims = (catalog.vectors(extra) @ np.asarray(query, dtype=np.float32)).astype(np.float32)
    return np.concatenate([rows, extra]), np.concatenate([sims, extra_sims])


def holdout(catalog: Catalog, popular_cache: PopularCache, cfg: Config) -> np.ndarray:
    """The A/B holdout's baseline: its own popularity list (the build's history and the
    holdout users' events, not the personalized arm's), then the newest items."""
    n = cfg.retrieval.n_candidates
    rows = catalog.rows_for(popular_cache.ids("pop", HOLDOUT_SCOPE, n))
    rows = rows[catalog.available(rows)] if len(rows) else rows
    newest = catalog.newest(max(0, n - len(rows)))
    return _unique(np.concatenate([rows, newest]) if len(rows) else newest)


def popular(catalog: Catalog, popular_cache: PopularCache, profile: dict | None, cfg: Config,
            session_categories: list[str] = ()) -> np.ndarray:
    """Cold start: popularity in the user's demographic segment (long-term and trending),
    global popularity, and trending items (in the categories of the live session, if there
    is one, else overall), mixed by the configured shares; then the newest items. Only the
    newest when there is no history at all."""
    n = cfg.retrieval.n_candidates
    cs = cfg.cold_start
    segment = segment_of(profile or {}, cs.segment_fields)
    trending = [f"cat:{c}" for c in session_categories[:2]] or ["global"]
    sources = [("pop", f"seg:{segment}", cs.segment_share / 2 if segment else 0.0),
               ("trend", f"seg:{segment}", cs.segment_share / 2 if segment else 0.0),
               ("pop", "global", cs.global_share)]
    sources += [("trend", scope, cs.trending_share / len(trending)) for scope in trending]
    total = sum(share for *_, share in sources) or 1.0
    lists = [catalog.rows_for(popular_cache.ids(kind, scope, int(np.ceil(n * share / total))))
             for kind, scope, share in sources if share > 0]
    rows = _interleave([r[catalog.available(r)] if len(r) else r for r in lists])
    newest = catalog.newest(cfg.retrieval.fresh_candidates + max(0, n - len(rows)))
    return _unique(np.concatenate([rows, newest]) if len(rows) else newest)


def _interleave(lists: list[np.ndarray]) -> np.ndarray:
    """Round-robin over the lists, so each source is represented near the top."""
    longest = max((len(x) for x in lists), default=0)
    out = [x[i] for i in range(longest) for x in lists if i < len(x)]
    return _unique(np.asarray(out, dtype=np.int64))


def _unique(rows: np.ndarray) -> np.ndarray:
    """Rows without repeats, first occurrence kept, order kept."""
    if not len(rows):
        return rows.astype(np.int64)
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)]
