"""`POST /recommend`: parse -> user state -> (pre-generated slate | decision | the holdout's or
apprentice's baseline) -> decision log -> response."""

from __future__ import annotations

import logging
import uuid

from banditrec.errors import Conflict
from banditrec.logs import bind_event
from serving import pregen
from serving.canary import CANARY, CURRENT, experiment_of, in_canary
from serving.decide import Slate, decide, decide_baseline
from serving.experiment import HOLDOUT, TREATMENT, arm_of
from serving.records import Decision, UserState
from serving.schema import parse_recommend
from serving.service import Service
from serving.stages import NO_LAPS, Laps
from store import StoreError

log = logging.getLogger(__name__)


def recommend(service: Service, body, laps: Laps = NO_LAPS) -> dict:
    """The response to one request; `laps` collects the time per stage (serving/stages.py)."""
    cfg = service.config
    req = parse_recommend(body, cfg.server.max_k)
    laps("parse")
    now = service.clock()
    event_id = req.event_id or uuid.uuid4().hex
    bind_event(event_id)  # every log line of this request carries it
    degraded = False

    # user state; an outage degrades to what this process remembers, never to an error
    try:
        service.sync_catalog()
        state = UserState.from_json(service.store.user_state(req.user_id))
        service.users.put(req.user_id, state)
    except StoreError as exc:
        log.warning("user state unavailable, serving degraded: %s", exc)
        state, degraded = service.users.get(req.user_id), True
    catalog = service.catalog  # one index version for the whole request
    laps("user_state")

    arm = arm_of(req.user_id, cfg.experiment)
    held = service.canary.held if arm == TREATMENT and cfg.learning.mode != "apprentice" else None
    canary = None if held is None else (held.record["id"], CANARY if in_canary(req.user_id, held.record) else CURRENT)
    slate = None
    if not degraded and arm != HOLDOUT and (canary is None or canary[1] == CURRENT) \
            and pregen.is_inactive(state, now, cfg):
        slate = pregen.cached_slate(service, catalog, req, state, now)
    if slate is None:
        ranking = service.ranking(catalog, held if canary and canary[1] == CANARY else None)
        ask = dict(user_id=req.user_id, context=req.context, k=req.k, exclude=req.exclude, now=now, explain=req.explain,
                   laps=laps)
        if arm == HOLDOUT or cfg.learning.mode == "apprentice":
            slate = decide_baseline(ranking, state, holdout=arm == HOLDOUT, baseline=req.baseline, **ask)
        else:
            slate = decide(ranking, state, event_id=event_id, **ask)
    if slate.version is None:  # a pre-generated slate: scored by an earlier model of this line
        slate.version = service.learner.version
    if slate.matched is not None and not req.test:
        service.apprentice_match(slate.matched)
    degraded = not log_decision(service, event_id, req.user_id, slate, now, arm, test=req.test,
                                canary=canary, made_here=req.event_id is None) or degraded
    laps("decision_log")
    answer = response(event_id, slate.version, "degraded" if degraded else slate.source, slate,
                      CANARY if canary and canary[1] == CANARY else arm)
    return {**answer, "test": True} if req.test else answer


def log_decision(service: Service, event_id: str, user_id: str, slate: Slate, now: float,
                 arm: str = TREATMENT, test: bool = False, canary: tuple[str, str] | None = None,
                 made_here: bool = False) -> bool:
    """Keep what learning needs when a reward arrives; False if Redis could not take it. A
    `test` decision is kept only so that its feedback is recognised: never closed (no default
    rewards), not in the decision log, the experiment's counters or the items' exposure. While
    a canary runs, `canary` is (its id, the arm: canary or current), counted in its experiment.
    `made_here`: the event id was made for this request (not the client's), so it cannot clash
    and the decision goes to Redis in one round trip with its log entry and counters."""
    cfg = service.config.feedback
    strategy = slate.strategy or service.strategy  # the one that drew it (a canary's, the live one)
    decision = Decision(ts=now, user_id=user_id, shared=slate.shared, version=slate.version,
                        items={i.item_id: (i.position, i.probability, i.action) for i in slate.items},
                        strategy=strategy.name, source=slate.source, aggregation=cfg.aggregation,
                        importance_weighted=strategy.importance_weighted and slate.source != "apprentice",
                        arm=arm, experiment=service.config.experiment.salt, test=test, canary=canary)
    wait = cfg.reward_wait_s + cfg.expired_grace_s
    try:
        if test:  # kept only so that its feedback is recognised
            stored = service.store.put_decision(event_id, decision.to_json(), wait, close_at=None)
        else:
            weights = service.popular.position_weights()  # what was shown counts for the items' live quality at once
            log_entry = None if slate.candidates is None else {
                "event_id": event_id, "ts": now, "shared": slate.shared, "path": slate.source,
                "strategy": strategy.name, "version": slate.version,
                "items": [[i.item_id, i.position, i.probability] for i in slate.items],
                "candidates": slate.candidates}
            shown = [(i.item_id, i.position, weights.get(i.position, 1.0)) for i in slate.items]
            buffered = service.exposure.buffering  # counted with the next flush, not in this round trip
            stored = service.store.put_decision(
                event_id, decision.to_json(), wait, close_at=now + cfg.reward_wait_s + cfg.close_delay_s,
                log_entry=log_entry, log_maxlen=service.config.log.stream_maxlen,
                arm=[(salt, name, {"decisions": 1, "impressions": len(slate.items)})
                     for salt, name in _arms(service, arm, canary)],
                shown=() if buffered else shown, unique=made_here)
            if stored and buffered:
                service.exposure.add(shown)
        if not stored:
            raise Conflict(f"event_id {event_id!r} was already used for another decision")
    except StoreError as exc:
        log.warning("decision %s not logged, feedback for it will be refused: %s", event_id, exc)
        return False
    return True


def _arms(service: Service, arm: str, canary: tuple[str, str] | None) -> list[tuple[str, str]]:
    """(experiment, arm) pairs a decision is counted in: the A/B holdout's, and a canary's."""
    main = (service.config.experiment.salt, arm)
    return [main] if canary is None else [main, (experiment_of(canary[0]), canary[1])]


def response(event_id: str, version: int, source: str, slate: Slate, arm: str = TREATMENT) -> dict:
    """The answer: the public `strategy` field is where the candidates came from (or "degraded")."""
    return {"event_id": event_id, "model_version": version, "arm": arm, "strategy": source,
            "items": [item.response() for item in slate.items]}
