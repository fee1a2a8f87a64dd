"""What every store module shares: the error type, fail-fast after outages, key helpers."""

from __future__ import annotations

import functools
import threading
import time

import redis

from banditrec.errors import Unavailable


class StoreError(Unavailable):
    """Redis did not answer or refused; nothing can be assumed recorded."""


class Breaker:
    """After Redis fails (refused at once, or three timeouts in a row), fail fast for a while,
    so that an outage costs each request microseconds instead of a socket timeout. (One slow
    answer is not an outage: Redis stalls for milliseconds while it stores a model snapshot.)"""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = retry_after_s
        self.open_until = 0.0
        self._failures = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.open_until and time.monotonic() < self.open_until:
            raise StoreError(f"redis unavailable: failing fast for {self.open_until - time.monotonic():.2f} s more")

    def succeeded(self) -> None:
        if self._failures or self.open_until:
            with self._lock:
                self._failures, self.open_until = 0, 0.0

    def failed(self, exc: redis.RedisError) -> None:
        for hook in FAILURE_HOOKS:  # e.g. the metrics' Redis error counter
            hook(exc)
        with self._lock:
            self._failures += 1
            if isinstance(exc, redis.ConnectionError) or self._failures >= 3:
                self.open_until = time.monotonic() + self.retry_after_s


FAILURE_HOOKS: list = []  # callables told of every failed Redis call (connection lost, timeout)


def _guard(fn, fast: bool):
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        breaker = self.fast_breaker if fast else self.breaker
        breaker.check()
        try:
            result = fn(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            breaker.failed(exc)
            raise StoreError(f"redis unavailable: {exc.__class__.__name__}: {exc}") from exc
        except redis.RedisError as exc:
            raise StoreError(f"redis refused: {exc.__class__.__name__}: {exc}") from exc
        breaker.succeeded()
        return result

    return wrapper


def guarded(fn):
    """A store operation on the normal client: fails fast while its breaker is open, maps
    Redis errors to StoreError."""
    return _guard(fn, fast=False)


def guarded_fast(fn):
    """The same for request-path reads on the fast client, with a breaker of their own: a
    10 ms read timeout says nothing about whether a write would succeed."""
    return _guard(fn, fast=True)


def in_pipeline(script, pipe, keys: list, args: list) -> None:
    """Queue a registered Lua script on a pipeline, its text with EVAL (under 1.2 KB; Redis
    caches it by its digest as it does a loaded one). Queued by digest (redis-py's `Script` on a
    pipeline), every execute would first ask SCRIPT EXISTS: a round trip more per request; and a
    cluster pipeline refuses EVALSHA. Routed like any command by its keys' hash slot."""
    pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)


def stream_id(value: str) -> tuple[int, int]:
    """A Redis stream id as a comparable pair: "1700000000000-3" -> (1700000000000, 3).

    >>> stream_id("1700000000000-3") > stream_id("999-9")
    True
    """
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def text(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def chunks(iterable, size):
    batch = []
    for x in iterable:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
