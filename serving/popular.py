"""Popularity lists kept in-process for a while: cheap for cold-start requests, and still
there (stale) when Redis is not."""

from __future__ import annotations

import threading
import time

from store import Store, StoreError


class PopularCache:
    def __init__(self, store: Store, ttl_s: float = 30.0, clock=time.monotonic):
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._lists: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def ids(self, kind: str, scope: str, n: int) -> list[str]:
        """Up to n item ids of a popularity list ("pop" long-term, "trend" decayed)."""
        key = (kind, scope)
        cached = self._lists.get(key)
        if cached is None or self.clock() - cached[0] > self.ttl_s:
            try:
                if kind == "pop":
                    ids = [item_id for item_id, _ in self.store.top_popular(n, scope=scope)]
                else:
                    ids = self.store.top_trending(n, scope=scope)
            except StoreError:
                ids = cached[1] if cached else []  # stale beats nothing while Redis is away
                with self._lock:  # retry after a full ttl, not on every request
                    self._lists[key] = (self.clock(), ids)
                return ids[:n]
            with self._lock:
                self._lists[key] = (self.clock(), ids)
            return ids[:n]
        return cached[1][:n]

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
