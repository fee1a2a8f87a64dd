"""Pre-generated slates for inactive users (the seed's homepage cache).

A user whose last event is older than `inactive.after_s` is served a slate generated in
advance: no retrieval, no scoring on the request path. Each slate keeps the shared
features and the per-position probabilities it was drawn with, so rewards for it are
learned like any other. Slates are refreshed in the background when due; due times are
spread by `inactive.jitter` so refreshes do not stampede. The user's next event drops it.
"""

from __future__ import annotations

import logging
import random
import uuid

from bandit.strategies import STRATEGIES
from serving.decide import Slate, decide, decide_baseline
from serving.filters import allowed
from serving.records import SlateItem, UserState
from store import StoreError

log = logging.getLogger(__name__)


def is_inactive(state: UserState, now: float, cfg) -> bool:
    after = cfg.inactive.after_s
    return bool(after > 0 and state.last is not None and now - state.last > after
                and state.n >= cfg.cold_start.min_interactions)


def cached_slate(service, catalog, req, state: UserState, now: float) -> Slate | None:
    """The user's pre-generated slate cut to k, or None: then the caller decides afresh, and
    (if there was none) the background refresher is asked for one. A slate whose first k
    items are not all still showable here is not used: cutting items out would change the
    logged probabilities. It is served in any context; the context it was drawn in is the
    one logged with it."""
    try:
        cached = service.store.get_pregen(req.user_id)
        if cached is None:
            service.store.schedule_pregen(req.user_id, now)
            return None
    except StoreError:
        return None
    if len(cached["items"]) < req.k:
        return None
    items = [SlateItem.from_json(item) for item in cached["items"][: req.k]]
    rows = catalog.rows_for(item.item_id for item in items)
    if len(rows) < len(items):
        return None
    ok = allowed(catalog, rows, exclude=req.exclude, seen=state.seen, context=req.context,
                 cfg=service.config.filters)
    drawn_by = STRATEGIES.get(cached.get("strategy_name", ""))  # logged as drawn (older slates: the service's)
    return Slate("pregenerated", cached["shared"], items, strategy=drawn_by) if ok.all() else None


def generate(service, user_id: str, state: UserState, context: dict, now: float) -> None:
    """Draw and store a slate of `inactive.slate_size` for the user, due again after a jittered interval."""
    cfg = service.config.inactive
    ask = dict(user_id=user_id, context=context, k=cfg.slate_size, exclude=frozenset(), now=now)
    if service.config.learning.mode == "apprentice":  # the baseline is what is served
        slate = decide_baseline(service.ranking(), state, holdout=False, **ask)
    else:
        slate = decide(service.ranking(), state, event_id=f"pregen-{uuid.uuid4().hex}", **ask)
    due = now + cfg.refresh_s * (1.0 + random.uniform(-cfg.jitter, cfg.jitter))
    try:
        service.store.put_pregen(user_id, {**slate.to_json(), "context": context, "generated_at": now},
                                 due=due, ttl_s=2 * cfg.refresh_s)
    except StoreError as exc:
        log.warning("pre-generated slate for %s not stored: %s", user_id, exc)


def refresh_due(service, now: float | None = None) -> int:
    """Regenerate the slates that are due (a bounded batch); drop those of users active again."""
    now = service.clock() if now is None else now
    refreshed = 0
    for user_id in service.store.due_pregen(now, service.config.inactive.refresh_batch):
        state = UserState.from_json(service.store.user_state(user_id, fast=False))
        if not is_inactive(state, now, service.config):
            service.store.drop_pregen(user_id)
            continue
        cached = service.store.get_pregen(user_id)
        generate(service, user_id, state, cached.get("context", {}) if cached else {}, now)
        refreshed += 1
    return refreshed
