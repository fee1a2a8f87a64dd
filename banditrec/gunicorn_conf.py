"""Gunicorn settings used by `banditrec serve` (`--config python:banditrec.gunicorn_conf`)."""

import gc
import os

from banditrec.config import load_config

_cfg = load_config()  # read when gunicorn loads this file, not when banditrec is imported

bind = f"{_cfg.server.host}:{_cfg.server.port}"
workers = _cfg.server.workers
worker_class = "gthread"
threads = _cfg.server.threads
timeout = 60
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190  # gunicorn's largest: a long id in the path gets the app's own 400, not a 414
accesslog = os.environ.get("BANDITREC_ACCESS_LOG") or None
errorlog = "-"
loglevel = "info"
control_socket_disable = True  # the default socket path is shared by every gunicorn of this user


# Imported once in the master before the workers fork: their code and objects are then shared
# copy-on-write by the workers instead of private to each. The libraries, then the app's modules
# (`app` imports them all; importing does no work: the app is made in each worker). Those create
# the Prometheus metrics; prometheus_client gives each worker its own values at its first write
# (it notices the new pid), and the master's own zero-valued live gauge is dropped below.
PRELOAD = ("numpy", "scipy.sparse", "flask", "redis", "vowpalwabbit", "prometheus_client", "app")


def on_starting(server):
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from serving.metrics import serves_no_requests  # (imported with `app` just now)

    serves_no_requests()  # no series of the master's pid in /metrics
    gc.collect()
    gc.freeze()  # the master's objects stay out of the workers' collections, which would write to their pages


def post_fork(server, worker):
    """Log as the config says (JSON lines by default), with each request's event_id; answer
    what gunicorn rejects before the app sees it in the API's JSON, not an HTML page."""
    from gunicorn import util

    from banditrec.logs import setup

    setup(_cfg.server.log_format)
    util.write_error = write_json_error  # gunicorn's only writer of its own error pages


_ERROR_CODES = {400: "invalid_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
                431: "request_header_fields_too_large", 500: "internal", 501: "not_implemented"}


def write_json_error(sock, status_int, reason, mesg):
    """`gunicorn.util.write_error` (a request line too long, a malformed request ...) as JSON."""
    import json

    from gunicorn import util

    body = json.dumps({"error": {"code": _ERROR_CODES.get(status_int, "http_error"),
                                 "message": mesg or reason}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    util.write_nonblock(sock, head + body)


def post_worker_init(worker):
    """The app is loaded: move start-up objects out of the GC's way (shorter p99 pauses)."""
    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """Save a final model snapshot and release resources."""
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("banditrec") if app is not None else None
    if service is not None:
        service.close()


def child_exit(server, worker):
    """A worker exited: its live gauges leave /metrics (Prometheus multi-process mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # (not serving.metrics: the master stays light)

        multiprocess.mark_process_dead(worker.pid)
