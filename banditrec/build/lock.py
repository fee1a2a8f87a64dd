"""One build at a time per deployment: a lock in Redis that service rebuilds, refits and CLI
builds all take."""

from __future__ import annotations

import time

from banditrec.errors import DataError
from store import Store

BUILD_LOCK_S = 3600.0  # the lock expires by itself if its holder dies


class BuildLock:
    """`with BuildLock(store, wait_s)`: waits up to `wait_s` for the lock, then raises DataError;
    with `required=False` it does not raise, and `held` says whether it got the lock."""

    def __init__(self, store: Store, wait_s: float = 0.0, required: bool = True):
        self.store, self.wait_s, self.required, self.token = store, wait_s, required, None

    @property
    def held(self) -> bool:
        return self.token is not None

    def __enter__(self):
        deadline = time.monotonic() + self.wait_s
        while (token := self.store.acquire_lock("build", BUILD_LOCK_S)) is None:
            if time.monotonic() >= deadline:
                if not self.required:
                    return self
                raise DataError("another build is running (lock 'build' in Redis); try again when it is done")
            time.sleep(0.2)
        self.token = token
        return self

    def __exit__(self, *exc):
        if self.token is not None:
            self.store.release_lock("build", self.token)
