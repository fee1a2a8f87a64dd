"""Periodic background work on daemon threads; a failing run is logged and counted
(`banditrec_background_failures_total{task}`), never fatal."""

from __future__ import annotations

import logging
import threading

from serving.metrics import BACKGROUND_FAILURES
from store import StoreError

log = logging.getLogger(__name__)


class Periodic:
    """Runs `task()` every `interval_s` until `stop()`."""

    def __init__(self, name: str, interval_s: float, task):
        self.name, self.interval_s, self.task = name, interval_s, task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"banditrec-{name}", daemon=True)

    def start(self) -> "Periodic":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
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
