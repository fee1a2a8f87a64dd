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
accesslog = os.environ.get("BANDITREC_ACCESS_LOG") or None
errorlog = "-"
loglevel = "info"
control_socket_disable = True  # the default socket path is shared by every gunicorn of this user


def post_fork(server, worker):
    """Log as the config says (JSON lines by default), with each request's event_id."""
    from banditrec.logs import setup

    setup(_cfg.server.log_format)


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
