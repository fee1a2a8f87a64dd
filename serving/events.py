"""`POST /events` and `PUT /users/{id}`: the signals that change what a user is shown next."""

from __future__ import annotations

import logging

from banditrec.config import ENGAGED_TYPES, EVENT_TYPES
from banditrec.errors import InvalidRequest
from retrieval.data import check_id, normalise_profile, segment_of
from serving.experiment import HOLDOUT, HOLDOUT_SCOPE, arm_of
from serving.schema import parse_event
from serving.service import Service
from serving.userstate import long_term_step
from store import StoreError

log = logging.getLogger(__name__)


def record_event(service: Service, body) -> dict:
    """Record an interaction durably, then update the user's real-time state and the
    popularity counters. 503 (StoreError) when it cannot be recorded."""
    cfg = service.config
    req = parse_event(body, EVENT_TYPES)
    now = service.clock()
    ts = req.timestamp if req.timestamp is not None else now
    if ts > now + 300:
        raise InvalidRequest(f"timestamp {ts:.0f} is {ts - now:.0f} s in the future")
    catalog = service.catalog
    row = catalog.row_of.get(req.item_id)
    category = catalog.category(row) if row is not None else None
    event = {"user_id": req.user_id, "item_id": req.item_id, "type": req.type, "timestamp": ts}
    if req.value is not None:
        event["value"] = req.value
    service.store.append_event(event, cfg.realtime.events_maxlen)  # the record, first

    weights = cfg.embedding.event_weights
    weight = weights[req.type] / max(weights.values())
    seen = (req.item_id, ts) if req.type in cfg.filters.seen_types else None
    active = cfg.inactive.after_s > 0 and now - ts <= cfg.inactive.after_s  # (again): no pre-generated slates
    profile = service.store.record_user_event(
        req.user_id, entry={"i": req.item_id, "t": req.type, "ts": ts, "c": category}, ts=ts,
        recent_n=cfg.realtime.recent_n, recent_ttl_s=cfg.realtime.recent_ttl_s, seen=seen,
        seen_max=cfg.filters.seen_max, seen_ttl_s=cfg.filters.seen_ttl_s, drop_pregen=active)
    if row is not None and weight > 0:
        service.store.update_user_vector(req.user_id, catalog.space,
                                         long_term_step(catalog.vector(row), weight, cfg.realtime))
    scopes = ["global"]
    if category:
        scopes.append(f"cat:{category}")
    segment = segment_of(profile, cfg.cold_start.segment_fields)  # the profile names the segment
    if segment:
        scopes.append(f"seg:{segment}")
    exp = cfg.experiment
    arm = arm_of(req.user_id, exp)
    long_term = tuple(s for s in scopes if not s.startswith("cat:")) + ((HOLDOUT_SCOPE,) if arm == HOLDOUT else ())
    service.store.bump_trending(scopes, req.item_id, weights[req.type], ts, cfg.realtime.trending_half_life_s,
                                cfg.realtime.trending_keep, unschedule_user=req.user_id if active else None,
                                long_term=long_term, engaged=req.type in ENGAGED_TYPES if row is not None else None,
                                attribute=(req.user_id, cfg.feedback.attribution_s))
    purchase = req.type == "purchase"
    try:  # the event is recorded: the experiment's counters are best effort
        service.store.session_event(exp.salt, arm, req.user_id, ts, exp.session_gap_s,
                                    (req.value or 0.0) if purchase else 0.0, purchase)
    except StoreError as exc:
        log.warning("event of %s recorded, session counters not updated: %s", req.user_id, exc)
    return {"status": "recorded", "item_known": row is not None}


def put_user(service: Service, user_id: str, body) -> dict:
    """Store a user's profile (age_group, location, signup_source) for demographic cold start."""
    check_id(user_id, "user_id in the path")
    if isinstance(body, dict) and "user_id" in body and body["user_id"] != user_id:
        raise InvalidRequest(f"user_id in the body ({body['user_id']!r}) differs from the path ({user_id!r})")
    if isinstance(body, dict):
        unknown = set(body) - {"user_id", "age_group", "location", "signup_source"}
        if unknown:
            raise InvalidRequest(f"unknown user field(s) {', '.join(sorted(unknown))}; "
                                 "known: age_group, location, signup_source, user_id")
    profile = normalise_profile(body)
    service.store.put_profile(user_id, profile)
    return {"user_id": user_id, "profile": profile}
