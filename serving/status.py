"""What the status routes answer: is it learning (`/learning`), is it alive (`/health`), can it
serve (`/ready`). Plain functions of a service; a store outage shows as unknown or not ready,
never as an error."""

from __future__ import annotations

import os

from banditrec.errors import BanditrecError
from serving.service import Service


def learning(service: Service) -> dict:
    config = service.config
    try:
        counts = service.store.apprentice_counts()
        waiting, first_due = service.store.waiting()
        dead = service.store.dead_letter_count()
    except BanditrecError:
        counts, waiting, first_due, dead = {}, None, None, None
    decisions = counts.get("decisions", 0)
    due_in = None if first_due is None else round(max(0.0, first_due - service.clock()), 1)
    exploring = service.exploring.now  # read once: the strategy and where it comes from, together
    return {"mode": config.learning.mode, "strategy": exploring.strategy.name,
            "exploration_from": exploring.source,  # "file", or "canary <id>" (promoted)
            "pid": os.getpid(),  # what this process holds: learned_here, exploration_from
            "model_version": service.learner.version, "learned_total": service.learner.total,
            "learned_here": service.learner.learned, "dead_letters": dead,
            "waiting": {"decisions": waiting, "next_learned_in_s": due_in,
                        "reward_wait_s": config.feedback.reward_wait_s},
            "apprentice": {"decisions": decisions, "matches": counts.get("matches", 0),
                           "match_rate": counts.get("matches", 0) / decisions if decisions else None}}


def health(service: Service) -> dict:
    return {"status": "ok", "model_version": service.learner.version, "items": len(service.catalog),
            "pid": os.getpid()}


def ready(service: Service) -> tuple[dict, bool]:
    """The body and whether it is ready: Redis answers and a model is loaded (the catalog, with
    or without an index, is loaded once the service exists)."""
    try:
        redis_ok = service.store.ping()
    except BanditrecError:
        redis_ok = False
    model_ok = service.learner.model is not None
    catalog = service.catalog
    return ({"ready": redis_ok and model_ok, "redis": redis_ok, "model": model_ok,
             "model_version": service.learner.version,
             "index_version": catalog.bundle.version if catalog.bundle else None, "items": len(catalog)},
            redis_ok and model_ok)
