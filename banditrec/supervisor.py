"""`banditrec serve`: a small process supervisor. It starts gunicorn (the workers), the
embedded Redis when no REDIS_URL is given, and the separate learner process when there is one;
it forwards signals, restarts a learner that died, and stops everything in order: the workers
first (their rewards are in the stream by then), then the learner, then Redis."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from banditrec.config import Config
from store.connection import EmbeddedRedis

log = logging.getLogger("banditrec")


# Measured on 2 cores under load: exact search of 100k vectors p99 15.4 ms with OpenBLAS's
# default threads, 3.7 ms with one (BENCHMARKS.md). Workers scale with processes.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# glibc's allocator in the workers and the learner: two arenas instead of one per thread, and
# blocks of 128 KB and more always mmapped (returned to the system when freed) instead of a
# threshold that rises after the first large free. At 1M items, 2 workers at 25 req/s for
# 240 s, each worker's private memory grew +130-139 MB without them, +25-31 MB with both
# (+46-61 with the arenas alone, +75-87 with the threshold alone); latency the same.
MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}


def serve(config: Config, config_path: str | None = None) -> int:
    """Run gunicorn on `app:create_app()` until it exits or a signal stops it; start the embedded
    Redis here if there is no REDIS_URL, and the separate learner (restarted if it dies) when
    the deployment has one. Returns gunicorn's exit code."""
    env = dict(os.environ)
    for name in BLAS_THREADS:  # one BLAS thread per process: threads only add p99 on a busy host
        env.setdefault(name, "1")
    for name, value in MALLOC.items():  # your own values win
        env.setdefault(name, value)
    env.update(BANDITREC_DATA_DIR=str(config.data.path), BANDITREC_HOST=config.server.host,
               BANDITREC_PORT=str(config.server.port), BANDITREC_WORKERS=str(config.server.workers))
    if config_path:
        env["BANDITREC_CONFIG"] = str(Path(config_path).resolve())
    embedded = None
    if not config.redis.url:
        embedded = EmbeddedRedis(config.data.path / "redis", config.redis.embedded_fsync)
        env["REDIS_URL"] = embedded.url
    # every worker writes its metrics to files here, and /metrics adds them up; a new run starts
    # from empty files (what a killed run left behind is removed here, not by that run)
    metrics_dir = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or config.data.path / "metrics")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    cmd = [sys.executable, "-m", "gunicorn", "--config", "python:banditrec.gunicorn_conf", "app:create_app()"]
    proc, learner = None, None
    separate = not config.server.learns_inline and config.server.learner != "external"

    def start_learner():
        # its own session: a Ctrl-C in the terminal reaches gunicorn, and the learner is stopped
        # after the workers (their rewards are in the stream by then); it also stops by itself
        # when this process is gone (it watches its parent)
        child = subprocess.Popen([sys.executable, "-m", "banditrec.cli", "learn"],
                                 env={**env, "BANDITREC_LEARNER_PARENT": str(os.getpid())}, start_new_session=True)
        log.info("learner process %d started", child.pid)
        return child

    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        if proc is not None:
            proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        if separate:
            learner = start_learner()
        log.info("serving on http://%s:%d with %d worker(s)", config.server.host, config.server.port,
                 config.server.workers)
        if stopping:
            return 0
        proc = subprocess.Popen(cmd, env=env)
        while proc.poll() is None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            if learner is not None and learner.poll() is not None and proc.poll() is None:
                log.error("learner process exited with %s; starting a new one", learner.returncode)
                time.sleep(1.0)
                learner = start_learner()
        return proc.returncode
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait()
        if learner is not None:
            learner.terminate()
            try:
                learner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                learner.kill()
        if embedded is not None:
            embedded.close()
