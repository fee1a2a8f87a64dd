"""Periodic background work on daemon threads; a failing run is logged and counted
(`banditrec_background_failures_total{task}`), never fatal."""

from __future__ import annotations

import logging
import random
import threading

from serving.metrics import BACKGROUND_FAILURES
from store import StoreError

log = logging.getLogger(__name__)


class Periodic:
    """Runs `task()` every `interval_s` until `stop()`; with `jitter`, each wait is drawn
    within +/- that share of it, so that processes started together drift apart instead of
    all running the task (and its Redis reads) at the same moments."""

    def __init__(self, name: str, interval_s: float, task, jitter: float = 0.0):
        self.name, self.interval_s, self.task = name, interval_s, task
        self.jitter = jitter
        self._random = random.Random()  # seeded from the OS: each process its own draws
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"banditrec-{name}", daemon=True)

    def start(self) -> "Periodic":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s * (1.0 + self.jitter * self._random.uniform(-1.0, 1.0))):
            try:
                self.task()
            except StoreError as exc:  # Redis away: try again next time, keep serving
                BACKGROUND_FAILURES.labels(self.name).inc()
                log.warning("%s skipped: %s", self.name, exc)
            except Exception:
                BACKGROUND_FAILURES.labels(self.name).inc()
                log.exception("%s failed", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
