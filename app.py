"""The HTTP layer: thin routes over the plain functions in `serving/`, one blueprint per
concern in `web/` (the client API, administration, operations, JSON errors).

    create_app()                      config from defaults + $BANDITREC_CONFIG + environment
    create_app(config)                a given Config
    create_app(config, deps=service)  an already-opened Service (tests, simulator)

Gunicorn serves it with `app:create_app()`; `banditrec serve` does that for you.
"""

from __future__ import annotations

import time

from flask import Flask, g, request

from banditrec.build.apart import SERVED_STEPS
from banditrec.config import Config, load_config
from banditrec.logs import bind_event
from serving import Service, metrics
from store.base import FAILURE_HOOKS
from web import errors
from web.admin import admin
from web.api import api
from web.ops import ops


def create_app(config: Config | None = None, *, deps: Service | None = None) -> Flask:
    config = config if config is not None else (deps.config if deps is not None else load_config())
    # its rebuilds and refits run in processes of their own (`banditrec.build.apart`)
    service = deps if deps is not None else Service.open(config, build=SERVED_STEPS)
    app = Flask("banditrec")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.extensions["banditrec"] = service
    if metrics.count_redis_failure not in FAILURE_HOOKS:  # once per process, however many apps
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

    for blueprint in (api, admin, ops):
        app.register_blueprint(blueprint)
    errors.register(app, config.server.max_body_bytes)
    return app
