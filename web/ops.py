"""Operations: learning status, metrics, stats, the dashboard, the experiment, the API
document, liveness and readiness."""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response

from banditrec.errors import BanditrecError, Unavailable
from serving import metrics, status
from serving.canary import experiment_of
from serving.canary import report as canary_report
from serving.experiment import report as experiment_report
from serving.openapi import document as openapi_document
from web.auth import readers_only
from web.body import as_json, service

ops = Blueprint("ops", __name__)


@ops.get("/learning")
def learning():
    return as_json(status.learning(service()))


@ops.get("/metrics")
def metrics_route():
    text, content_type = metrics.exposition(service())
    return Response(text, mimetype=content_type.split(";")[0], headers={"Content-Type": content_type})


@ops.get("/stats")
@readers_only
def stats():
    return as_json(metrics.summary(service()))


@ops.get("/dashboard")
@readers_only
def dashboard():
    return Response(resources.files("serving").joinpath("dashboard.html").read_text(encoding="utf-8"),
                    mimetype="text/html")


@ops.get("/experiments")
@readers_only
def experiments():
    config = service().config
    store = service().store
    try:
        counts = store.arm_counts(config.experiment.salt)
        record = store.canary()
        canary = canary_report(record, store.arm_counts(experiment_of(record["id"])) if record else {}, config.canary)
    except BanditrecError as exc:
        raise Unavailable(f"experiment counters unavailable: {exc.message}") from None
    return as_json({**experiment_report(counts, config.experiment), "canary": canary})


@ops.get("/openapi.json")
def openapi():
    return as_json(openapi_document(service().config))


@ops.get("/health")
def health():
    return as_json(status.health(service()))


@ops.get("/ready")
def ready():
    body, ok = status.ready(service())
    return as_json(body, 200 if ok else 503)
