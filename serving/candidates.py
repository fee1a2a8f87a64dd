"""Retrieve, the first step of a decision: where candidates come from (the user's vector
through the vector index and the fresh buffer, or popularity; the holdout's and the apprentice's
baselines), then what of them may be shown (`serving.filters.allowed`, applied once, here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from banditrec.config import Config
from retrieval.catalog import Catalog
from retrieval.data import segment_of
from serving.experiment import HOLDOUT_SCOPE
from serving.filters import allowed, among
from serving.popular import PopularCache
from serving.ranking import Ranking
from serving.records import UserState
from serving.stages import NO_LAPS, Laps


@dataclass(frozen=True)
class Candidates:
    """Catalog rows in retrieval order, their similarity to the user's query vector (None when
    they did not come from it), and where they came from: personalized, cold_start (popularity
    for users without enough history), popularity (the holdout's list) or apprentice. A request
    names only the candidates it shows or logs (`ids_at`): decoding all ~1000 ids cost ~0.3 ms
    a request at 1M items."""

    rows: np.ndarray
    sims: np.ndarray | None
    source: str

    def ids_at(self, catalog: Catalog, positions) -> list[str]:
        """The item ids of the candidates at `positions`."""
        return catalog.ids.take(self.rows[np.asarray(positions, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.rows)


def retrieve(ranking: Ranking, state: UserState, query: np.ndarray | None, *, profile: dict,
             session_categories: Sequence[str], exclude: frozenset, context: dict,
             laps: Laps = NO_LAPS) -> Candidates:
    """The bandit's candidates, as they may be shown: personal from
    `cold_start.min_interactions` interactions on, or with onboarding preferences (with a
    vector), else popularity."""
    cfg, catalog = ranking.config, ranking.catalog
    if query is not None and (state.n >= cfg.cold_start.min_interactions or state.preferences):
        rows, sims = personal(catalog, query, cfg, ranking.popular)
        found = Candidates(rows, sims, "personalized")
    else:
        found = Candidates(popular(catalog, ranking.popular, profile, cfg, session_categories), None, "cold_start")
    laps("retrieval")
    return showable(ranking, found, state, exclude=exclude, context=context)


def retrieve_baseline(ranking: Ranking, state: UserState, *, holdout: bool, baseline: Sequence[str] | None,
                      profile: dict, exclude: frozenset, context: dict, laps: Laps = NO_LAPS) -> Candidates:
    """A baseline's candidates in the order they are served: the A/B holdout's own popularity
    list, or (apprentice) the client's `baseline` order, else popularity."""
    catalog = ranking.catalog
    if holdout:
        found = Candidates(holdout_rows(catalog, ranking.popular, ranking.config), None, "popularity")
    else:
        rows = catalog.rows_for(baseline) if baseline else popular(catalog, ranking.popular, profile, ranking.config)
        found = Candidates(rows, None, "apprentice")
    laps("retrieval")
    return showable(ranking, found, state, exclude=exclude, context=context)


def showable(ranking: Ranking, found: Candidates, state: UserState, *, exclude: frozenset,
             context: dict) -> Candidates:
    keep = allowed(ranking.catalog, found.rows, exclude=exclude, seen=state.seen, context=context,
                   cfg=ranking.config.filters)
    kept = np.flatnonzero(keep)
    return Candidates(found.rows[kept], None if found.sims is None else found.sims[kept], found.source)


def personal(catalog: Catalog, query: np.ndarray, cfg: Config,
             popular_cache: PopularCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest items to the query vector (the index's top n merged with the fresh buffer's), then
    the globally most popular and the best liked items the neighbourhood missed: a taste
    vector alone would never let the bandit find what everybody likes. (Measured on real
    ratings: ranked by similarity alone, the neighbourhood did worse than random items.)"""
    rows, sims = catalog.search(query, cfg.retrieval.n_candidates, cfg.retrieval.fresh_candidates)
    n_popular, n_quality = cfg.retrieval.popular_candidates, cfg.retrieval.quality_candidates
    if popular_cache is None or n_popular + n_quality == 0:
        return rows, sims
    ids = popular_cache.ids("pop", "global", n_popular) if n_popular else []
    ids += popular_cache.best(n_quality) if n_quality else []
    extra = catalog.rows_for_list(ids)
    extra = _unique(extra[catalog.available(extra) & ~among(extra, rows)]) if len(extra) else extra
    if not len(extra):
        return rows, sims
    extra_sims = (catalog.vectors(extra) @ np.asarray(query, dtype=np.float32)).astype(np.float32)
    return np.concatenate([rows, extra]), np.concatenate([sims, extra_sims])


def holdout_rows(catalog: Catalog, popular_cache: PopularCache, cfg: Config) -> np.ndarray:
    """The A/B holdout's baseline: its own popularity list (the build's history and the
    holdout users' events, not the personalized arm's), then the newest items."""
    n = cfg.retrieval.n_candidates
    rows = catalog.rows_for_list(popular_cache.ids("pop", HOLDOUT_SCOPE, n))
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
    lists = [catalog.rows_for_list(popular_cache.ids(kind, scope, int(np.ceil(n * share / total))))
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
