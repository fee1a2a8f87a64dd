"""What may not be shown: exclusions, seen items, business rules. Applied before scoring."""

from __future__ import annotations

import numpy as np

from banditrec.config import FiltersConfig
from retrieval.catalog import Catalog


def allowed(catalog: Catalog, rows: np.ndarray, *, exclude: frozenset[str], seen: frozenset[str] | set[str],
            context: dict, cfg: FiltersConfig) -> np.ndarray:
    """Mask over `rows`: available (in stock, not deleted), not excluded by the request, not seen
    (consumed), not blocked by a rule. The one place that decides what may be shown: the
    candidate sources skip unavailable rows only to fill their counts. The hidden ids are
    looked up as rows, not the rows' ids decoded (an available row is its id's only one: an
    upsert retires the row it replaces before the new one can be found, `Catalog.upsert`)."""
    if not len(rows):
        return np.ones(0, dtype=bool)
    mask = catalog.available(rows)
    hidden = exclude | seen if seen else exclude
    if hidden:
        found = catalog.row_of.get_many(list(hidden))
        mask &= ~among(rows, found[found >= 0])
    for rule in cfg.block:
        if rule.context in context and context[rule.context] == rule.value and \
                type(context[rule.context]) is type(rule.value):
            codes = [c for c in (catalog.code_of(name) for name in rule.categories) if c is not None]
            if codes:
                mask &= ~np.isin(catalog.category_codes(rows), codes)
    return mask


def among(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Mask of `rows` found in `others` (np.isin sorts both together: ~0.15 ms for 100 in 1000).

    >>> among(np.array([4, 9, 1]), np.array([1, 7, 4, 3])).tolist()
    [True, False, True]
    """
    if not len(others):
        return np.zeros(len(rows), dtype=bool)
    ordered = np.sort(others)
    at = np.minimum(np.searchsorted(ordered, rows), len(ordered) - 1)
    return ordered[at] == rows
