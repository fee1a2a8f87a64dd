"""The slates' exposure counted in batches (`serving.exposure`, `realtime.exposure_flush_s`):
a served worker adds its slates up and writes the sums later, and what reaches Redis is
exactly what counting each decision at once would have written (real Redis)."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

import serving.exposure as exposure_module
from serving.recommend import recommend
from store import StoreError


@pytest.fixture
def service(build, open_service):
    return open_service(build(realtime={"exposure_flush_s": 1.0}))


def _exposure(service) -> dict[str, float]:
    ids = list(service.catalog.ids.take(range(len(service.catalog.ids))))
    _, _, shown, _, _ = service.store.item_counts(ids)
    return {i: float(x) for i, x in zip(ids, shown) if x}


def _positions(service) -> dict[int, float]:
    return service.store.position_counts()[0]


def _serve(service, n: int, start: int = 0) -> tuple[Counter, Counter]:
    """n decisions; the exposure and position impressions they should count."""
    weights, positions = Counter(), Counter()
    by_position = service.popular.position_weights()
    for r in range(start, start + n):
        out = recommend(service, {"user_id": f"u{r % 7}", "k": 5, "event_id": f"exp-{r}"})
        for item in out["items"]:
            weights[item["item_id"]] += by_position.get(item["position"], 1.0)
            positions[item["position"]] += 1
    return weights, positions


def _grew(before: dict, after: dict) -> Counter:
    return Counter({k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)
                    if abs(after.get(k, 0.0) - before.get(k, 0.0)) > 1e-9})


def _same(a: Counter, b: Counter) -> bool:
    return set(a) == set(b) and all(abs(a[k] - b[k]) < 1e-6 for k in a)


def test_by_default_each_decision_counts_its_slate_at_once(build, open_service):
    service = open_service(build())
    service.start_exposure_flush()
    assert not service.exposure.buffering
    before, positions = _exposure(service), _positions(service)
    weights, shown = _serve(service, 6)
    assert _same(_grew(before, _exposure(service)), weights)
    assert _same(_grew(positions, _positions(service)), shown)


def test_without_a_background_flush_each_decision_counts_its_slate_at_once(service):
    before, positions = _exposure(service), _positions(service)
    weights, shown = _serve(service, 6)
    assert _same(_grew(before, _exposure(service)), weights)
    assert _same(_grew(positions, _positions(service)), shown)


def test_a_served_worker_counts_the_sums_at_the_flush_exactly(service):
    service.exposure.background = True  # as `start_exposure_flush` sets it (the task itself is not started here)
    before, positions = _exposure(service), _positions(service)
    weights, shown = _serve(service, 12)
    assert _exposure(service) == before and _positions(service) == positions  # nothing written yet
    assert service.exposure.pending() == len(weights)
    assert service.exposure.flush() == len(weights)
    assert _same(_grew(before, _exposure(service)), weights)
    assert _same(_grew(positions, _positions(service)), shown)
    assert service.exposure.pending() == 0 and service.exposure.flush() == 0  # nothing twice


def test_the_mirrored_item_counts_see_a_flush(service):
    service.exposure.background = True
    catalog = service.catalog
    rows = np.arange(len(catalog.ids))
    ids = list(catalog.ids.take(rows))
    service.popular.counts.read(catalog, rows, ids)  # mirrored now
    _serve(service, 8)
    service.exposure.flush()
    mirrored, _ = service.popular.counts.read(catalog, rows, ids)
    _, _, shown, _, _ = service.store.item_counts(ids)
    assert np.allclose(mirrored[:, 2], [float(x or 0.0) for x in shown], atol=1e-4)
    assert mirrored[:, 2].sum() > 0


def test_a_flush_in_chunks_counts_every_item_and_the_positions_once(service, monkeypatch):
    monkeypatch.setattr(exposure_module, "CHUNK", 3)
    service.exposure.background = True
    before, positions = _exposure(service), _positions(service)
    weights, shown = _serve(service, 10)
    assert len(weights) > 3
    service.exposure.flush()
    assert _same(_grew(before, _exposure(service)), weights)
    assert _same(_grew(positions, _positions(service)), shown)


def test_a_failed_flush_keeps_the_sums_for_the_next_one(service, monkeypatch):
    service.exposure.background = True
    before, positions = _exposure(service), _positions(service)
    weights, shown = _serve(service, 6)
    real = service.store.count_exposure

    def away(*args, **kwargs):
        raise StoreError("Redis is away")

    monkeypatch.setattr(service.store, "count_exposure", away)
    with pytest.raises(StoreError):
        service.exposure.flush()
    more_weights, more_shown = _serve(service, 4, start=100)  # served meanwhile
    monkeypatch.setattr(service.store, "count_exposure", real)
    service.exposure.flush()
    assert _same(_grew(before, _exposure(service)), weights + more_weights)
    assert _same(_grew(positions, _positions(service)), shown + more_shown)


def test_a_flush_that_timed_out_is_not_written_again(service, monkeypatch):
    """A timeout may come after Redis ran the script: those sums are dropped, never counted twice."""
    service.exposure.background = True
    before = _exposure(service)
    weights, _ = _serve(service, 4)
    real = service.store.count_exposure

    def late(*args, **kwargs):
        real(*args, **kwargs)  # Redis ran it ...
        raise StoreError("redis unavailable: TimeoutError") from TimeoutError("... the answer came too late")

    monkeypatch.setattr(service.store, "count_exposure", late)
    with pytest.raises(StoreError):
        service.exposure.flush()
    monkeypatch.setattr(service.store, "count_exposure", real)
    assert service.exposure.dropped == len(weights) and service.exposure.pending() == 0
    service.exposure.flush()
    assert _same(_grew(before, _exposure(service)), weights)  # once


def test_sums_that_cannot_be_kept_are_dropped_and_counted(service, monkeypatch):
    monkeypatch.setattr(exposure_module, "MAX_PENDING", 2)
    service.exposure.background = True
    weights, _ = _serve(service, 3)
    assert len(weights) > 2
    monkeypatch.setattr(service.store, "count_exposure", lambda *a, **k: (_ for _ in ()).throw(StoreError("away")))
    with pytest.raises(StoreError):
        service.exposure.flush()
    assert service.exposure.dropped == len(weights) and service.exposure.pending() == 0


def test_closing_the_service_counts_what_is_left(build, open_service):
    service = open_service(build(realtime={"exposure_flush_s": 1.0}))
    service.exposure.background = True
    before = _exposure(service)
    weights, _ = _serve(service, 5)
    store = service.store
    service.close()
    ids = list(weights)
    _, _, shown, _, _ = store.item_counts(ids)
    assert all(abs(float(s) - before.get(i, 0.0) - weights[i]) < 1e-6 for i, s in zip(ids, shown))


def test_the_background_task_flushes_on_its_own(build, open_service):
    service = open_service(build(realtime={"exposure_flush_s": 0.05}))
    service.start_exposure_flush()
    assert service.exposure.buffering
    before = _exposure(service)
    weights, _ = _serve(service, 4)
    deadline = time.monotonic() + 60  # generous: only a stalled machine takes more than a few flushes
    while not _same(_grew(before, _exposure(service)), weights) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _same(_grew(before, _exposure(service)), weights)


def test_a_flush_interval_of_zero_counts_each_decision_even_in_a_served_worker(build, open_service):
    service = open_service(build(realtime={"exposure_flush_s": 0.0}))
    service.start_exposure_flush()
    assert not service.exposure.buffering
    before = _exposure(service)
    weights, _ = _serve(service, 4)
    assert _same(_grew(before, _exposure(service)), weights)
