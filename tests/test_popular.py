"""Popularity lists and catalog-wide numbers kept in-process (serving/popular.py), against a
real Redis: re-read when stale on the request path, or by the background refresh when the
service runs one, so that no request pays for a re-read of 20,000 items' counts."""

from serving.popular import PopularCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(store, clock, background=False):
    cache = PopularCache(store, ttl_s=30.0, clock=clock)
    cache.background = background
    return cache


def test_without_a_background_refresh_a_request_rereads_what_is_stale(store):
    clock = Clock()
    cache = _cache(store, clock)
    store.put_popularity({"a": 3.0, "b": 2.0})
    assert cache.ids("pop", "global", 2) == ["a", "b"]
    store.put_popularity({"c": 5.0, "a": 3.0, "b": 2.0})
    clock.now += 10
    assert cache.ids("pop", "global", 2) == ["a", "b"]  # within the ttl: as read
    clock.now += 25
    assert cache.ids("pop", "global", 2) == ["c", "a"]


def test_a_longer_list_than_was_read_is_read_again(store):
    clock = Clock()
    cache = _cache(store, clock)
    store.put_popularity({"a": 3.0, "b": 2.0, "c": 1.0})
    assert cache.ids("pop", "global", 1) == ["a"]
    assert cache.ids("pop", "global", 3) == ["a", "b", "c"]
    store.put_popularity({"d": 9.0})
    assert cache.ids("pop", "global", 2) == ["a", "b"]  # within the ttl, read for 3


def test_with_a_background_refresh_requests_read_what_it_read_last(store):
    clock = Clock()
    cache = _cache(store, clock, background=True)
    store.put_popularity({"a": 3.0, "b": 2.0})
    store.put_quality({"a": 10.0, "b": 10.0}, {"a": 1.0, "b": 9.0})
    assert cache.ids("pop", "global", 2) == ["a", "b"]
    assert cache.best(1) == ["b"]
    store.put_popularity({"c": 5.0, "a": 3.0, "b": 2.0})
    store.put_quality({"a": 10.0, "b": 10.0}, {"a": 9.0, "b": 1.0})
    clock.now += 60  # stale by the ttl, but the refresh keeps it: no re-read on the request path
    assert cache.ids("pop", "global", 2) == ["a", "b"] and cache.best(1) == ["b"]
    cache.refresh()
    assert cache.ids("pop", "global", 2) == ["c", "a"] and cache.best(1) == ["a"]
    store.put_popularity({"d": 9.0})
    clock.now += 4 * 30 + 1  # the refresh has not run for four periods (it fails): re-read inline
    assert cache.ids("pop", "global", 1) == ["d"]


def test_a_periodic_task_with_jitter_waits_within_its_share_of_the_interval():
    import random

    from serving.background import Periodic

    waits = []

    class Stop:
        def wait(self, timeout):
            waits.append(timeout)
            return len(waits) > 200

    runs = []
    task = Periodic("t", 30.0, lambda: runs.append(1), jitter=0.2)
    task._stop, task._random = Stop(), random.Random(0)
    task._run()
    assert len(runs) == 200 and min(waits) >= 24.0 and max(waits) <= 36.0
    assert max(waits) - min(waits) > 10.0  # drawn across the range, not one fixed wait
    plain = Periodic("t", 30.0, lambda: None)
    plain._stop = Stop()
    waits.clear()
    plain._run()
    assert set(waits) == {30.0}
