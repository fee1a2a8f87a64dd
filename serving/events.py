"""`POST /events` and `PUT /users/{id}`: the signals that change what a user is shown next."""

from __future__ import annotations

import logging

from banditrec.config import ENGAGED_TYPES, EVENT_TYPES
from banditrec.errors import Conflict, InvalidRequest
from retrieval.data import check_id, normalise_profile, segment_of
from serving.experiment import HOLDOUT, HOLDOUT_SCOPE, arm_of
from serving.schema import EventRequest, parse_event, parse_preferences
from serving.service import Service
from serving.userstate import long_term_step, preference_vector
from store import StoreError
from store.once import Once
from store.users import UNREAD, VECTOR_STEP

log = logging.getLogger(__name__)


EVENT_LEASE_S = 30.0  # how long one attempt at an event_id keeps a concurrent retry out (409)


def record_event(service: Service, body) -> dict:
    """Record an interaction durably, then update the user's real-time state and the
    popularity counters. 503 (StoreError) when it cannot be recorded. With an `event_id`, a
    retry does only the steps an earlier attempt did not (`store.once`); 409 while another
    attempt of it is under way."""
    cfg = service.config
    req = parse_event(body, EVENT_TYPES)
    now = service.clock()
    ts = req.timestamp if req.timestamp is not None else now
    if ts > now + 300:
        raise InvalidRequest(f"timestamp {ts:.0f} is {ts - now:.0f} s in the future")
    if req.event_id is None:
        return _record(service, req, ts, now, None)
    once = service.store.take_once(req.user_id, req.event_id, EVENT_LEASE_S, cfg.realtime.event_id_ttl_s)
    if once is None:
        raise Conflict(f"event {req.event_id!r} of user {req.user_id!r} is being recorded by another request; "
                       "retry in a few seconds for its outcome")
    try:
        answer = _record(service, req, ts, now, once)
    finally:
        try:
            service.store.release_once(once)
        except StoreError as exc:  # the lease runs out by itself
            log.warning("event %s of %s: lease not released (it expires in %.0f s): %s",
                        req.event_id, req.user_id, EVENT_LEASE_S, exc)
    return {**answer, "event_id": req.event_id, "duplicate": "stream" in once.done}


def _record(service: Service, req: EventRequest, ts: float, now: float, once: Once | None) -> dict:
    """The event's writes, in order, each skipped when `once` says an earlier attempt did it."""
    cfg = service.config
    done = once.done if once is not None else frozenset()
    catalog = service.catalog
    row = catalog.row_of.get(req.item_id)
    category = catalog.category(row) if row is not None else None
    event = {"user_id": req.user_id, "item_id": req.item_id, "type": req.type, "timestamp": ts}
    if req.value is not None:
        event["value"] = req.value
    if "stream" not in done:
        service.store.append_event(event, cfg.realtime.events_maxlen, once=once)  # the record, first

    weights = cfg.embedding.event_weights
    weight = weights[req.type] / max(weights.values())
    seen = (req.item_id, ts) if req.type in cfg.filters.seen_types else None
    active = cfg.inactive.after_s > 0 and now - ts <= cfg.inactive.after_s  # (again): no pre-generated slates
    moves = row is not None and weight > 0 and VECTOR_STEP not in done  # the user's long-term vector
    old = UNREAD
    if "user" in done:
        profile = service.store.profiles([req.user_id])[0]
    else:  # (and the vector as it is, read in the same round trip)
        profile, vector = service.store.record_user_event(
            req.user_id, entry={"i": req.item_id, "t": req.type, "ts": ts, "c": category}, ts=ts,
            recent_n=cfg.realtime.recent_n, recent_ttl_s=cfg.realtime.recent_ttl_s, seen=seen,
            seen_max=cfg.filters.seen_max, seen_ttl_s=cfg.filters.seen_ttl_s, drop_pregen=active, once=once,
            vector_of=catalog.space if moves else None)
        old = vector
    step = long_term_step(catalog.vector(row), weight, cfg.realtime) if moves else None
    if moves and old is UNREAD:  # (a retry that found the user's step done: the vector is read first)
        service.store.update_user_vector(req.user_id, catalog.space, step, once=once)
    scopes = ["global"]
    if category:
        scopes.append(f"cat:{category}")
    segment = segment_of(profile, cfg.cold_start.segment_fields)  # the profile names the segment
    if segment:
        scopes.append(f"seg:{segment}")
    exp = cfg.experiment
    arm = arm_of(req.user_id, exp)
    trending = None
    if "counts" not in done:
        long_term = tuple(s for s in scopes if not s.startswith("cat:")) + ((HOLDOUT_SCOPE,) if arm == HOLDOUT else ())
        trending = dict(scopes=scopes, item_id=req.item_id, weight=weights[req.type], ts=ts,
                        half_life_s=cfg.realtime.trending_half_life_s, keep=cfg.realtime.trending_keep,
                        unschedule_user=req.user_id if active else None, long_term=long_term,
                        engaged=req.type in ENGAGED_TYPES if row is not None else None,
                        attribute=(req.user_id, cfg.feedback.attribution_s))
    purchase = req.type == "purchase"
    revenue = (req.value or 0.0) if purchase else 0.0
    # the vector, the item's counts and the session in one round trip (then the session's counting)
    counted = service.store.event_counts(
        req.user_id, vector=(catalog.space, step, old) if moves and old is not UNREAD else None, trending=trending,
        session=(exp.salt, ts, exp.session_gap_s, revenue, purchase) if "session" not in done else None, once=once)
    if "session" not in done:
        try:  # the event is recorded: the experiment's counters are best effort
            if counted.session is None:
                raise StoreError(f"redis refused: {counted.session_error}")
            service.store.count_session(exp.salt, arm, counted.session, purchase, once=once)
        except StoreError as exc:
            log.warning("event of %s recorded, session counters not updated: %s", req.user_id, exc)
    return {"status": "recorded", "item_known": row is not None}


def put_user(service: Service, user_id: str, body) -> dict:
    """Store a user's profile (age_group, location, signup_source) for demographic cold start,
    and their onboarding `preferences`: a user without a vector yet starts from theirs."""
    check_id(user_id, "user_id in the path")
    if isinstance(body, dict) and "user_id" in body and body["user_id"] != user_id:
        raise InvalidRequest(f"user_id in the body ({body['user_id']!r}) differs from the path ({user_id!r})")
    if isinstance(body, dict):
        unknown = set(body) - {"user_id", "age_group", "location", "signup_source", "preferences"}
        if unknown:
            raise InvalidRequest(f"unknown user field(s) {', '.join(sorted(unknown))}; "
                                 "known: age_group, location, preferences, signup_source, user_id")
    profile = normalise_profile(body)
    preferences = parse_preferences(body["preferences"]) if body.get("preferences") is not None else None
    service.store.put_profile(user_id, profile, preferences.to_json() if preferences is not None else None)
    answer = {"user_id": user_id, "profile": profile}
    if preferences is not None:
        catalog = service.catalog
        start = preference_vector(preferences, catalog)
        if start is not None:  # the starting point of the long-term vector; the user's own events move it on
            service.store.update_user_vector(user_id, catalog.space, lambda old: start if old is None else None)
        answer["preferences"] = {**preferences.to_json(), "known_items": len(catalog.rows_for(preferences.named)),
                                 "personal": start is not None}
    return answer
