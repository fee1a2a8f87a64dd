"""The HTTP layer: thin routes over the plain functions in `serving/`.

    create_app()                      config from defaults + $BANDITREC_CONFIG + environment
    create_app(config)                a given Config
    create_app(config, deps=service)  an already-opened Service (tests, simulator)

Gunicorn serves it with `app:create_app()`; `banditrec serve` does that for you.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import time
from importlib import resources

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from banditrec.build import STEPS as build_steps
from banditrec.config import Config, load_config
from banditrec.errors import BanditrecError, InvalidRequest, Unauthorized, Unavailable
from banditrec.logs import bind_event
from serving import Service, delete_item, metrics, put_item, put_user, record_event
from serving.feedback import feedback
from serving.recommend import recommend
from serving.experiment import report as experiment_report
from serving.openapi import document as openapi_document
from serving.stages import Laps
from store.base import FAILURE_HOOKS

log = logging.getLogger("banditrec.http")

_HTTP_CODES = {500: "internal", 400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def create_app(config: Config | None = None, *, deps: Service | None = None) -> Flask:
    config = config if config is not None else (deps.config if deps is not None else load_config())
    service = deps if deps is not None else Service.open(config, build=build_steps)
    app = Flask("banditrec")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.extensions["banditrec"] = service
    admin = _admin_only(config.server.api_key)

    if metrics.count_redis_failure not in FAILURE_HOOKS:
        FAILURE_HOOKS.append(metrics.count_redis_failure)

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()
        bind_event(None)  # a thread serves many requests: no event_id left over from the last one

    @app.after_request
    def time_request(response):
        # bounded labels: a client can send any method and path; unmatched ones share one series
        route = f"{request.method} {request.url_rule.rule}" if request.url_rule is not None else "unmatched"
        metrics.observe_request(route, response.status_code,
                                time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    @app.post("/recommend")
    def recommend_route():
        laps = Laps()
        out = recommend(service, _body(), laps)
        response = _json(out)
        laps("serialise")
        metrics.observe_recommend(out, laps)
        return response

    @app.post("/feedback")
    def feedback_route():
        out = feedback(service, _body())
        metrics.REWARDS.labels("duplicate" if out.get("duplicate") else "seen" if "seen" in out else "accepted").inc()
        return _json(out)

    @app.post("/events")
    def events_route():
        body = _body()
        out = record_event(service, body)
        metrics.EVENTS.labels(body["type"]).inc()
        return _json(out)

    @app.put("/items/<path:item_id>")
    @admin
    def put_item_route(item_id):
        return _json(put_item(service, item_id, _body()))

    @app.delete("/items/<path:item_id>")
    @admin
    def delete_item_route(item_id):
        return _json(delete_item(service, item_id))

    @app.put("/users/<path:user_id>")
    @admin
    def put_user_route(user_id):
        return _json(put_user(service, user_id, _body()))

    @app.post("/admin/rebuild")
    @admin
    def rebuild_route():
        summary = service.rebuild()
        served = service.catalog.bundle.version if service.catalog.bundle else None
        return _json({"rebuilt": summary is not None, "index_version": served, **(summary or {})})

    @app.get("/learning")
    def learning():
        try:
            counts = service.store.apprentice_counts()
            waiting, first_due = service.store.waiting()
        except BanditrecError:
            counts, waiting, first_due = {}, None, None
        decisions = counts.get("decisions", 0)
        due_in = None if first_due is None else round(max(0.0, first_due - service.clock()), 1)
        return _json({"mode": config.learning.mode, "strategy": service.strategy.name,
                      "model_version": service.learner.version, "learned_total": service.learner.total,
                      "learned_here": service.learner.learned,
                      "waiting": {"decisions": waiting, "next_learned_in_s": due_in,
                                  "reward_wait_s": config.feedback.reward_wait_s},
                      "apprentice": {"decisions": decisions, "matches": counts.get("matches", 0),
                                     "match_rate": counts.get("matches", 0) / decisions if decisions else None}})

    @app.get("/metrics")
    def metrics_route():
        text, content_type = metrics.exposition(service)
        return Response(text, mimetype=content_type.split(";")[0], headers={"Content-Type": content_type})

    @app.get("/stats")
    def stats():
        return _json(metrics.summary(service))

    @app.get("/dashboard")
    def dashboard():
        return Response(resources.files("serving").joinpath("dashboard.html").read_text(encoding="utf-8"),
                        mimetype="text/html")

    @app.get("/experiments")
    def experiments():
        try:
            counts = service.store.arm_counts(config.experiment.salt)
        except BanditrecError as exc:
            raise Unavailable(f"experiment counters unavailable: {exc.message}") from None
        return _json(experiment_report(counts, config.experiment))

    @app.get("/openapi.json")
    def openapi():
        return _json(openapi_document(config))

    @app.get("/health")
    def health():
        return _json({"status": "ok", "model_version": service.learner.version, "items": len(service.catalog),
                      "pid": os.getpid()})

    @app.get("/ready")
    def ready():
        try:
            redis_ok = service.store.ping()
        except BanditrecError:
            redis_ok = False
        model_ok = service.learner.model is not None  # the catalog (index or not) is loaded once the app exists
        ready = redis_ok and model_ok
        body = {"ready": ready, "redis": redis_ok, "model": model_ok,
                "model_version": service.learner.version,
                "index_version": service.catalog.bundle.version if service.catalog.bundle else None,
                "items": len(service.catalog)}
        return _json(body, 200 if ready else 503)

    @app.errorhandler(BanditrecError)
    def handle_error(exc: BanditrecError):
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        response = _json(exc.to_json(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="banditrec admin"'
        return response

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        code = _HTTP_CODES.get(exc.code, "http_error")
        message = {413: f"request body is larger than {config.server.max_body_bytes} bytes",
                   404: f"no route {request.method} {request.path}",
                   405: f"method {request.method} is not allowed on {request.path}"}.get(exc.code, exc.description)
        response = _json({"error": {"code": code, "message": message}}, exc.code)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json({"error": {"code": "internal", "message": "internal error"}}, 500)

    return app


def _admin_only(api_key: str):
    """A decorator for routes that change the catalog or users: with `server.api_key` set, they
    need `Authorization: Bearer <key>` (or `X-API-Key: <key>`); without it they are open."""
    expected = api_key.encode()

    def wrap(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if expected:
                auth = request.headers.get("Authorization", "")
                given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("X-API-Key", "")
                if not hmac.compare_digest(given.strip().encode(), expected):
                    raise Unauthorized("this route needs the API key: send `Authorization: Bearer <key>`"
                                       if not given else "the API key is wrong")
            return view(*args, **kwargs)

        return guarded

    return wrap


def _body():
    """The request's JSON body: application/json, valid UTF-8 text, finite numbers of sane size."""
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json")
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_int=_int)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if b"\\u" in raw:  # escapes can spell lone surrogates, which are not text
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("body contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)") from None
    return body


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 15:  # beyond 2**53 a JSON number is not exact in most clients
        raise InvalidRequest(f"body contains the integer {text[:20]}{'...' if len(text) > 20 else ''}, "
                             "which is out of range (|n| < 10**15)")
    return int(text)


def _reject_constant(name: str):
    raise InvalidRequest(f"body contains {name}, which is not valid JSON (numbers must be finite)")


def _json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, allow_nan=False), status=status,
                    mimetype="application/json")
