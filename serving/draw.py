"""Draw, the last step of a decision: the slate, position by position, by the exploration
strategy with the rules every strategy shares (fresh boost and slots, category cap, MMR
diversity); and the first position's distribution as the decision log keeps it."""

from __future__ import annotations

import hashlib

import numpy as np

from bandit.strategies import Choice, SlateRules
from serving.candidates import Candidates
from serving.ranking import Ranking
from serving.records import SlateItem
from serving.score import Scored
from store import StoreError


def decision_rng(event_id: str) -> np.random.Generator:
    """The decision's randomness, seeded by its event_id, so it can be replayed from the log."""
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little"))


def draw(ranking: Ranking, found: Candidates, scored: Scored, *, k: int, event_id: str,
         now: float) -> tuple[list[SlateItem], list | None]:
    """The slate and the logged first-position candidates (`logged_candidates`)."""
    fresh = fresh_mask(ranking, found, now)
    choices, first_probs = ranking.strategy.choose_slate(scored.scores, k, decision_rng(event_id),
                                                         rules=_rules(ranking, found.rows, fresh, scored))
    return (slate_items(ranking, found, scored, choices, fresh),
            logged_candidates(ranking, found, first_probs, choices))


def in_order(ranking: Ranking, found: Candidates, scored: Scored, *, k: int,
             now: float) -> tuple[list[SlateItem], list | None]:
    """A baseline's slate: its first k candidates as they are, each with probability 1."""
    choices = [Choice(i, 1.0, False) for i in range(min(k, len(found)))]
    first_probs = np.eye(1, len(found), 0).ravel() if len(found) else np.zeros(0)
    fresh = fresh_mask(ranking, found, now)
    return (slate_items(ranking, found, scored, choices, fresh),
            logged_candidates(ranking, found, first_probs, choices))


def slate_items(ranking: Ranking, found: Candidates, scored: Scored, choices: list[Choice],
                fresh: np.ndarray) -> list[SlateItem]:
    wanted = [c.index for c in choices]
    ids = found.ids_at(ranking.catalog, wanted)
    ranking.catalog.row_of.remember(ids, found.rows[wanted])  # the exposure log names them to this process next
    actions = scored.actions.take(wanted) if hasattr(scored.actions, "take") else [scored.actions[i] for i in wanted]
    return [SlateItem(item_id, position, round(float(scored.scores.mean[c.index]), 6) + 0.0,
                      c.probability, c.explored, bool(fresh[c.index]), action)
            for position, (c, item_id, action) in enumerate(zip(choices, ids, actions), start=1)]


def logged_candidates(ranking: Ranking, found: Candidates, probs: np.ndarray | None,
                      choices: list[Choice]) -> list | None:
    """The first position's most likely candidates (always with the chosen one):
    [item_id, similarity, probability] each, or None when the log is off."""
    cfg = ranking.config.log
    if not cfg.decisions or probs is None or not len(found):
        return None
    keep = np.argsort(-probs, kind="stable")[: cfg.max_candidates]
    if choices and choices[0].index not in keep:
        keep = np.append(keep[:-1], choices[0].index)
    sims, keep = found.sims, keep.tolist()
    return [[item_id, None if sims is None else round(float(sims[i]), 4), float(probs[i])]
            for i, item_id in zip(keep, found.ids_at(ranking.catalog, keep))]


def fresh_mask(ranking: Ranking, found: Candidates, now: float) -> np.ndarray:
    """Over the candidates: young items with few labelled impressions, the ones the boost is for."""
    cfg, rows = ranking.config.fresh, found.rows
    if not len(rows):
        return np.zeros(len(rows), dtype=bool)
    young = ranking.catalog.published_at(rows) >= now - cfg.max_age_s
    if not young.any() or cfg.min_impressions == 0:
        return young & (cfg.min_impressions > 0)
    idx = np.flatnonzero(young)
    try:
        counts = np.asarray(ranking.labelled(found.ids_at(ranking.catalog, idx)))
    except StoreError:
        counts = np.zeros(len(idx))  # unknown while Redis is away: treat young items as unobserved
    young[idx] = counts < cfg.min_impressions
    return young


def _rules(ranking: Ranking, rows: np.ndarray, fresh: np.ndarray, scored: Scored) -> SlateRules:
    cfg, catalog, mean = ranking.config, ranking.catalog, scored.scores.mean
    vectors = None
    if cfg.diversity.lambda_ > 0 and len(rows):
        vectors = np.vstack([catalog.vector(r) for r in rows])
    spread = float(np.ptp(mean)) if len(rows) else 0.0
    return SlateRules(fresh=fresh, boost=cfg.fresh.boost, fresh_slots=cfg.fresh.slots,
                      groups=catalog.category_codes(rows) if cfg.filters.max_per_category else None,
                      max_per_group=cfg.filters.max_per_category, vectors=vectors,
                      diversity=cfg.diversity.lambda_, score_range=max(spread, 1e-3))
