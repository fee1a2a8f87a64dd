"""The client API: ask for a slate, send rewards, send events."""

from __future__ import annotations

from flask import Blueprint

from serving import metrics
from serving.events import record_event
from serving.feedback import feedback
from serving.recommend import recommend
from serving.stages import Laps
from web.body import as_json, body, service, slate_json

api = Blueprint("api", __name__)


@api.post("/recommend")
def recommend_route():
    laps = Laps()
    out = recommend(service(), body(), laps)
    response = slate_json(out)
    laps("serialise")
    metrics.observe_recommend(out, laps)
    return response


@api.post("/feedback")
def feedback_route():
    out = feedback(service(), body())
    metrics.REWARDS.labels("duplicate" if out.get("duplicate") else "seen" if "seen" in out else "accepted").inc()
    return as_json(out)


@api.post("/events")
def events_route():
    event = body()
    out = record_event(service(), event)
    metrics.EVENTS.labels(event["type"]).inc()
    return as_json(out)
