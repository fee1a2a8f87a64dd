"""This process's copy of the candidates' counts (serving/itemcounts.py) against a real Redis:
always what a fresh read of every candidate says, while re-reading only what changed."""

import logging
import threading
import time

import numpy as np
import pytest

from bandit.features import item_line
from retrieval.catalog import Catalog
from serving.itemcounts import ItemCounts, _top
from serving.popular import PopularCache
from store import StoreError

DIM = 4
CLICK = dict(ts=0.0, half_life_s=86400.0, keep=100)


def _catalog(n: int) -> Catalog:
    catalog = Catalog(None, DIM, item_line)
    rng = np.random.default_rng(0)
    for i in range(n):
        v = rng.normal(size=DIM)
        catalog.upsert({"item_id": f"i{i}", "in_stock": True, "published_at": 0}, v / np.linalg.norm(v))
    return catalog


def _direct(store, ids):
    *columns, totals = store.item_counts(ids)
    return np.array([[float(v or 0.0) for v in column] for column in columns]).T, totals


def _assert_exact(counts, store, catalog, rows):
    ids = catalog.ids.take(rows)
    got, totals = counts.read(catalog, rows, ids)
    want, want_totals = _direct(store, ids)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert totals == want_totals


def test_kept_counts_follow_every_kind_of_change_and_reread_only_those(store):
    catalog = _catalog(50)
    counts = ItemCounts(store, preload=False)
    rows = np.arange(0, 50, 2)
    store.put_quality({"i0": 10.0, "i2": 4.0}, {"i0": 3.0, "i2": 1.0})
    _assert_exact(counts, store, catalog, rows)
    assert counts.reread == 25  # everything, once
    _assert_exact(counts, store, catalog, rows)
    assert counts.reread == 25  # nothing changed: nothing re-read
    store.count_shown([("i4", 1, 1.0), ("i6", 2, 0.5), ("i7", 3, 0.3)])
    store.count_engaged("i4", 1, user_id="u1", attribution_ttl_s=60)
    store.bump_trending(["global"], "i8", 3.0, engaged=True, **CLICK)
    store.bump_trending(["global"], "i4", 3.0, engaged=True, attribute=("u1", 60), **CLICK)  # attributed
    store.bump_trending(["global"], "i10", 1.0, engaged=False, **CLICK)
    _assert_exact(counts, store, catalog, rows)
    assert counts.reread == 25  # the changed counts came with the change list or the exposure log: none re-read
    _assert_exact(counts, store, catalog, np.array([7, 7, 9]))  # i7 and i9 were never known: read, once
    assert counts.reread == 27
    store.put_quality({"i0": 1.0}, {"i0": 1.0})  # a build replaced the counts: all re-read
    _assert_exact(counts, store, catalog, rows)
    assert counts.reread == 27 + 25


def test_exposure_counted_before_a_row_is_read_is_not_added_again(store, monkeypatch):
    catalog = _catalog(10)
    counts = ItemCounts(store, preload=False)
    _assert_exact(counts, store, catalog, np.arange(5))
    read = store.counts_as_of

    def shown_then_read(ids):  # another process shows the item between the log read and the row read
        store.count_shown([(ids[0], 1, 1.0), ("i1", 2, 0.5)])
        return read(ids)

    monkeypatch.setattr(store, "counts_as_of", shown_then_read)
    counts.read(catalog, np.array([7]), ["i7"])
    monkeypatch.setattr(store, "counts_as_of", read)
    _assert_exact(counts, store, catalog, np.arange(10))  # i7 read with its exposure: not added again; i1 added
    assert counts.reread == 5 + 1 + 4


def test_a_new_catalog_or_a_lost_redis_starts_over(store):
    catalog = _catalog(10)
    counts = ItemCounts(store, preload=False)
    store.count_shown([("i1", 1, 1.0)])
    _assert_exact(counts, store, catalog, np.arange(10))
    store.delete_all()  # Redis lost everything (a restart without persistence); only this test's keys
    _assert_exact(counts, store, catalog, np.arange(10))
    assert counts.reread == 20
    other = _catalog(10)  # an index swap: rows may mean other items now
    _assert_exact(counts, store, other, np.arange(10))
    assert counts.reread == 30


def test_rows_added_after_the_copy_was_made_are_read(store):
    catalog = _catalog(5)
    counts = ItemCounts(store, preload=False)
    _assert_exact(counts, store, catalog, np.arange(5))
    catalog.upsert({"item_id": "late", "in_stock": True, "published_at": 0}, np.array([1.0, 0, 0, 0]))
    store.count_shown([("late", 1, 2.0)])
    _assert_exact(counts, store, catalog, np.arange(6))
    assert counts.read(catalog, np.array([5]), ["late"])[0][0, 2] == pytest.approx(2.0)


def test_quality_from_the_kept_counts_equals_a_fresh_read(store):
    catalog = _catalog(30)
    popular = PopularCache(store)
    store.put_quality({f"i{i}": 10.0 for i in range(30)}, {f"i{i}": float(i % 5) for i in range(30)})
    store.count_shown([(f"i{i}", 1 + i % 10, 1.0) for i in range(0, 30, 3)])
    for i in range(0, 30, 6):
        store.count_engaged(f"i{i}", 1)
    rows = np.arange(30)
    ids = catalog.ids.take(rows)
    np.testing.assert_allclose(popular.quality(ids, rows, catalog), popular.quality(ids), rtol=1e-6)


def _world(store, catalog):
    store.put_quality({f"i{i}": 10.0 + i for i in range(0, 40, 2)}, {f"i{i}": float(i % 4) for i in range(0, 40, 2)})
    store.count_shown([(f"i{i}", 1 + i % 10, 0.5) for i in range(0, 40, 3)])
    store.count_engaged("i3", 1, user_id="u1", attribution_ttl_s=60)
    store.bump_trending(["global"], "i3", 3.0, engaged=True, attribute=("u1", 60), **CLICK)  # attributed
    store.bump_trending(["global"], "i5", 1.0, engaged=False, **CLICK)


def test_a_load_and_the_changes_add_the_exposure_a_release_before_kept_in_its_sorted_set(store):
    catalog = _catalog(40)
    _world(store, catalog)
    legacy = {f"i{i}": 0.25 * i for i in range(0, 40, 5)}  # some of them also shown by this release (_world)
    store.client.zadd(store._pkey(store.LEGACY_EXPOSURE, "global"), legacy)
    counts = ItemCounts(store, preload=False)
    counts.read(catalog, np.array([0]), ["i0"])
    assert counts.load(catalog, counts._epoch)
    before = counts.reread
    _assert_exact(counts, store, catalog, np.arange(40))  # every row as Redis sums it, none read one by one
    assert counts.reread == before
    got, _ = counts.read(catalog, np.array([15, 30]), ["i15", "i30"])
    assert got[:, 2].tolist() == [3.75 + 0.5, 7.5 + 0.5]  # the legacy set's and this release's (i15, i30 shown)
    store.count_shown([("i15", 2, 1.0)])
    store.count_engaged("i15", 2)  # on the change list: its counts come along, summed in the script
    _assert_exact(counts, store, catalog, np.arange(40))
    assert counts.read(catalog, np.array([15]), ["i15"])[0][0, 2] == 3.75 + 0.5 + 1.0


def test_a_load_fills_every_row_and_then_only_changes_are_read(store):
    catalog = _catalog(40)
    _world(store, catalog)
    counts = ItemCounts(store, preload=False)
    counts.read(catalog, np.array([0]), ["i0"])  # the first read sets the epoch; one row read
    assert counts.load(catalog, counts._epoch) and counts.loads == 1
    before = counts.reread
    _assert_exact(counts, store, catalog, np.arange(40))  # every row known: none read one by one
    assert counts.reread == before
    store.count_shown([("i7", 2, 1.0)])
    _assert_exact(counts, store, catalog, np.arange(40))
    assert counts.reread == before  # i7's exposure came with the exposure log


def test_changes_made_while_loading_are_not_lost(store, monkeypatch):
    catalog = _catalog(40)
    _world(store, catalog)
    counts = ItemCounts(store, preload=False)
    counts.read(catalog, np.array([0]), ["i0"])
    scan = store.scan_counts

    def scan_then_change(kind, chunk=2_000):
        if kind == "qn":  # before the exposure is scanned
            store.count_shown([("i12", 1, 1.0), ("i0", 2, 0.5)])
        yield from scan(kind, chunk)
        if kind == "lr":  # after the whole scan, before the merge
            store.count_engaged("i9", 1)
            store.bump_trending(["global"], "i10", 1.0, engaged=True, **CLICK)
            store.count_shown([("i14", 1, 1.0), ("i0", 2, 0.5)])

    monkeypatch.setattr(store, "scan_counts", scan_then_change)
    assert counts.load(catalog, counts._epoch)
    _assert_exact(counts, store, catalog, np.arange(40))


def test_a_load_for_an_old_catalog_or_epoch_is_discarded(store):
    catalog = _catalog(10)
    counts = ItemCounts(store, preload=False)
    counts.read(catalog, np.array([0]), ["i0"])
    epoch = counts._epoch
    store.put_quality({"i1": 5.0}, {"i1": 1.0})  # a build: new epoch
    counts.read(catalog, np.array([0]), ["i0"])
    assert not counts.load(catalog, epoch)
    assert not counts.load(_catalog(10), counts._epoch)  # another catalog than the one served
    assert counts.load(catalog, counts._epoch)


def test_the_background_load_starts_on_the_first_read_and_a_failure_is_counted(store, monkeypatch, caplog):
    catalog = _catalog(20)
    _world(store, catalog)
    counts = ItemCounts(store)
    _assert_exact(counts, store, catalog, np.arange(5))
    counts.wait(30)
    assert counts.loads == 1 and counts.failures == 0
    _assert_exact(counts, store, catalog, np.arange(20))

    def broken(kind, chunk=2_000):
        raise RuntimeError("scan failed")
        yield

    failing = ItemCounts(store)
    monkeypatch.setattr(store, "scan_counts", broken)
    _assert_exact(failing, store, catalog, np.arange(20))  # served from one-by-one reads meanwhile
    failing.wait(30)
    assert failing.failures == 1 and failing.loads == 0 and "item counts not loaded" in caplog.text


def test_a_long_change_list_forgets_the_rows_instead(store):
    catalog = _catalog(1200)
    counts = ItemCounts(store, preload=False)
    rows = np.arange(1200)
    _assert_exact(counts, store, catalog, rows)
    for i in range(1100):  # more than come along with the list
        store.count_engaged(f"i{i}", 1)
    _assert_exact(counts, store, catalog, rows)
    assert counts.reread == 1200 + 1100


def test_a_large_batch_of_exposure_is_added_without_reading(store):
    catalog = _catalog(1200)
    counts = ItemCounts(store, preload=False)
    rows = np.arange(1200)
    _assert_exact(counts, store, catalog, rows)
    store.count_exposure({f"i{i}": 0.5 + i % 3 for i in range(1100)}, {1: 1100.0})  # a batch (serving/exposure.py)
    store.count_shown([(f"i{i}", 1, 1.0) for i in range(0, 1200, 7)])
    _assert_exact(counts, store, catalog, rows)
    assert counts.reread == 1200


def test_a_reader_behind_the_exposure_log_starts_over(store, monkeypatch):
    catalog = _catalog(20)
    counts = ItemCounts(store, preload=False)
    _assert_exact(counts, store, catalog, np.arange(20))
    changes = store.item_changes
    monkeypatch.setattr(store, "item_changes", lambda since, *a, **kw: changes(since, *a, **{**kw, "shown_limit": 2}))
    for i in range(3):
        store.count_shown([(f"i{i}", 1, 1.0)])
    _assert_exact(counts, store, catalog, np.arange(20))  # more than the limit: everything re-read
    assert counts.reread == 40


def test_a_load_overtaken_by_the_change_list_is_discarded_and_the_next_read_loads_again(store, monkeypatch):
    catalog = _catalog(30)
    _world(store, catalog)
    counts = ItemCounts(store)
    scan = store.scan_counts
    overtaken = []

    def scan_while_busy(kind, chunk=2_000):
        if not overtaken:
            overtaken.append(kind)
            store.count_shown([(f"i{i}", 1, 1.0) for i in range(20)])
        yield from scan(kind, chunk)

    monkeypatch.setattr(store, "scan_counts", scan_while_busy)
    monkeypatch.setattr(store, "item_changes", _trimming(store))
    counts.read(catalog, np.arange(3), catalog.ids.take(np.arange(3)))  # starts the load (it changes counts
    counts.wait(30)                                                     # meanwhile: nothing asserted yet)
    assert counts.discarded == 1 and counts.loads == 0
    _assert_exact(counts, store, catalog, np.arange(30))  # a second load started and merged
    counts.wait(30)
    assert counts.loads == 1
    _assert_exact(counts, store, catalog, np.arange(30))


def _trimming(store):
    """item_changes as if the list had been trimmed past whatever changed since `since` (the real
    list keeps the last 100,000 items), when a load merges (the only caller asking for no
    counts); requests, reading often, keep up."""
    changes = store.item_changes

    def trimmed(since, limit=50_000, counts_up_to=1000, shown_limit=20_000):
        got = changes(since, limit, counts_up_to, shown_limit)
        overtaken = counts_up_to == 0 and got.seq > since
        return got._replace(trimmed=got.seq) if overtaken else got
    return trimmed


def test_small_exposure_added_to_a_large_one_is_not_lost(store):
    catalog = _catalog(3)
    counts = ItemCounts(store, preload=False)
    store.count_exposure({"i0": 3e7}, {1: 1.0})  # a long-lived top item: float32 steps by 2 here
    counts.read(catalog, np.arange(3), catalog.ids.take(np.arange(3)))
    for _ in range(20):
        store.count_shown([("i0", 1, 0.25)])
    got, _ = counts.read(catalog, np.array([0]), ["i0"])
    assert got[0, 2] == 3e7 + 5.0 and counts.reread == 3


def _away(*args, **kwargs):
    raise StoreError("redis unavailable: (a test)")


def test_the_catalog_wide_signals_from_the_kept_counts_equal_those_read_from_redis(store, monkeypatch):
    catalog = _catalog(40)
    _world(store, catalog)
    from_redis, from_copy = PopularCache(store), PopularCache(store)
    from_copy.counts.preload = False
    assert from_copy.counts.tops(20) is None  # nothing loaded yet: the signals are read from Redis
    from_copy.counts.read(catalog, np.array([0]), ["i0"])
    assert from_copy.counts.load(catalog, from_copy.counts._epoch)
    store.count_shown([("i7", 2, 1.0), ("i8", 1, 0.25), ("i39", 4, 0.7)])  # changes after the load
    store.count_engaged("i7", 1)
    store.bump_trending(["global"], "i9", 1.0, engaged=True, **CLICK)
    for top in (40, 2):  # every item, and a top shorter than the lists (no ties at its end)
        from_redis.feature_top = from_copy.feature_top = top
        want, got = from_redis._signals(force=True), from_copy._signals(force=True)
        tops = from_copy.counts.tops(top)  # by row
        ids = list(tops.ids_of(tops.rows))
        redis_ids = [i for i, n, _ in store.quality_counts(top) if n > 0]  # (i3's one event was attributed)
        assert sorted(ids) == sorted(redis_ids[:top]) and len(ids) == min(top, 22)
        assert got.quality.keys() == want.quality.keys()  # (i3 is among the items shown)
        np.testing.assert_allclose([got.quality[i] for i in want.quality], list(want.quality.values()), rtol=1e-6)
        assert [got.quality[i] for i in got.by_quality] == [got.quality[i] for i in want.by_quality]  # (ties aside)
        assert from_copy.best(3) == got.by_quality[:3] and from_redis.best(3) == want.by_quality[:3]
        assert got.share == pytest.approx(want.share) and got.factor == pytest.approx(want.factor)
    from_redis.feature_top = from_copy.feature_top = 40  # while Redis is away, the last signals answer, ...
    want, got = from_redis._signals(force=True), from_copy._signals(force=True)
    ids = [f"i{i}" for i in range(40)]
    with monkeypatch.context() as patch:
        patch.setattr(from_copy.counts, "read", _away)
        patch.setattr(from_redis.store, "item_counts", _away)
        np.testing.assert_allclose(from_copy.quality(ids, np.arange(40), catalog), from_redis.quality(ids), rtol=1e-6)
        np.testing.assert_allclose(from_redis.quality(ids), [want.quality.get(i, want.share) for i in ids])
        assert len(set(from_redis.quality(ids).tolist())) > 2  # ... and it is not the share for every item
    store.put_quality({"i1": 5.0}, {"i1": 5.0})  # a build replaced the counts: the copy starts over ...
    assert from_copy.counts.tops(5) is None  # ... and until it is loaded again, Redis is read
    assert from_copy._signals(force=True).by_quality == from_redis._signals(force=True).by_quality


def test_the_top_counts_ranked_from_the_last_floor_are_those_of_a_full_ranking():
    rng = np.random.default_rng(3)
    for _ in range(300):
        size = int(rng.integers(1, 80))
        distinct = rng.permutation(size).astype(np.float64) * (rng.random(size) < 0.7)  # zeros: no count
        tied = rng.integers(0, 5, size=size).astype(np.float64)
        n = int(rng.integers(1, 40))
        for values in (distinct, tied):
            full = _top(values, n)
            assert len(full) == min(n, int((values > 0).sum())) and (values[full] > 0).all()
            for floor in (0.5, 1.0, 2.0, 4.0, float(values.max()), float(values.max()) + 1.0):
                got = _top(values, n, floor)  # a floor above the n-th value, at it, below it
                assert values[got].tolist() == values[full].tolist()
                if values is distinct:
                    assert got.tolist() == full.tolist()
                same = values[got][1:] == values[got][:-1]
                assert (got[1:][same] > got[:-1][same]).all()  # equal counts by row


def test_the_sequence_kept_per_row_starts_over_before_it_could_overflow(store, monkeypatch):
    """Rows keep the change sequence they are exact as of in 4 bytes, relative to the sequence
    at the last start-over: once the sequence has moved `_SPAN` past it, the copy starts over
    (here after a few changes) and stays exact; a load begun before a start-over is discarded."""
    import serving.itemcounts

    monkeypatch.setattr(serving.itemcounts, "_SPAN", 3)
    catalog = _catalog(30)
    _world(store, catalog)
    counts = ItemCounts(store, preload=False)
    rows = np.arange(30)
    _assert_exact(counts, store, catalog, rows)
    first_base, read = counts._base, counts.reread
    for i in range(6):  # each a change of the sequence: past _SPAN
        store.count_shown([(f"i{i}", 1, 1.0)])
        store.bump_trending(["global"], f"i{i + 10}", 1.0, engaged=True, **CLICK)
        _assert_exact(counts, store, catalog, rows)
    assert counts._base > first_base and counts.reread > read  # started over at least once, and re-read
    assert counts._asof.dtype == np.uint32 and int(counts._asof.max()) < 3
    scan = store.scan_counts

    def starting_over_meanwhile(kind):  # the sequence moves past _SPAN while the load scans
        for i in range(4):
            store.count_shown([(f"i{i}", 1, 1.0)])
        counts.read(catalog, np.array([0]), ["i0"])
        return scan(kind)

    monkeypatch.setattr(store, "scan_counts", starting_over_meanwhile)
    base = counts._base
    assert not counts.load(catalog, counts._epoch) and counts.discarded == 1 and counts._base != base
    monkeypatch.setattr(store, "scan_counts", scan)
    assert counts.load(catalog, counts._epoch)  # a load within one span merges
    _assert_exact(counts, store, catalog, rows)


def _held_scan(store, monkeypatch, release: threading.Event):
    """The background load's count scans wait for `release` (a load as slow as the test needs;
    the requests' own scans, of the live exposure until the copy is loaded, do not)."""
    scan = store.scan_counts

    def held(kind, chunk=2_000):
        if threading.current_thread().name == "item-counts-load":
            release.wait(60)
        yield from scan(kind, chunk)

    monkeypatch.setattr(store, "scan_counts", held)


def test_a_starting_service_takes_requests_once_its_copy_of_the_counts_is_loaded(build, store, monkeypatch):
    from serving import Service

    config = build()
    held = threading.Event()
    scan = store.scan_counts

    def slow(kind, chunk=2_000):
        if threading.current_thread().name == "item-counts-load" and not held.is_set():
            held.set()
            time.sleep(2.0)  # a load that takes a while: open returns after it, not meanwhile
        yield from scan(kind, chunk)

    monkeypatch.setattr(store, "scan_counts", slow)
    service = Service.open(config, store=store, start_threads=True)
    try:
        assert held.is_set()
        assert service.popular.counts.wait(0) and not service.popular.counts.loading
        assert service.popular.counts.loads == 1
    finally:
        service.close()


def test_a_load_discarded_at_start_is_started_again_within_the_wait(build, store, monkeypatch, caplog):
    from serving import Service

    config = build()
    scan = store.scan_counts
    scans = []

    def overtaken_once(kind, chunk=2_000):
        if threading.current_thread().name == "item-counts-load" and not scans:
            scans.append(kind)
            store.put_quality({"i1": 5.0}, {"i1": 1.0})  # a build meanwhile: a new counts epoch, the load is stale
        yield from scan(kind, chunk)

    monkeypatch.setattr(store, "scan_counts", overtaken_once)
    caplog.set_level(logging.INFO, logger="serving.service")
    service = Service.open(config, store=store, start_threads=True)
    try:
        counts = service.popular.counts
        assert counts.discarded == 1 and counts.loads == 1 and counts.wait(0)
        assert "item counts loaded in" in caplog.text
    finally:
        service.close()


def test_a_load_longer_than_the_wait_goes_on_while_the_service_serves(build, store, monkeypatch, caplog):
    from app import create_app
    from serving import Service

    config = build(server={"counts_wait_s": 0.2})
    release = threading.Event()
    _held_scan(store, monkeypatch, release)
    service = Service.open(config, store=store, start_threads=True)
    try:
        counts = service.popular.counts
        assert counts.loading and not counts.wait(0)
        assert "item counts still loading after" in caplog.text
        response = create_app(deps=service).test_client().post("/recommend", json={"user_id": "u1", "k": 5})
        assert response.status_code == 200 and len(response.get_json()["items"]) == 5  # counts read from Redis
        release.set()
        assert counts.wait(30) and counts.loads == 1
    finally:
        release.set()
        service.close()


def test_items_added_after_the_build_grow_the_copy_by_a_little_and_keep_every_count(store):
    catalog = _catalog(5000)
    counts = ItemCounts(store, preload=False)
    store.put_quality({"i1": 4.0, "i4999": 2.0}, {"i1": 1.0, "i4999": 1.0})
    _assert_exact(counts, store, catalog, np.arange(0, 5000, 7))
    for i in range(5000, 5003):  # items upserted since
        v = np.ones(DIM) / 2.0
        catalog.upsert({"item_id": f"i{i}", "in_stock": True, "published_at": 0}, v)
    store.count_shown([("i5002", 1, 1.0), ("i1", 2, 1.0)])
    store.count_engaged("i5001", 1)
    _assert_exact(counts, store, catalog, np.array([1, 5002, 5001, 4999, 5000]))
    assert len(counts._known) == 5000 + 5000 // 8  # not twice the catalog
    _assert_exact(counts, store, catalog, np.arange(5003))
