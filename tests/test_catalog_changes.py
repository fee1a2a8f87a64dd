"""Items added, changed and deleted while serving; incremental rebuilds swapped in under load."""

from __future__ import annotations

import threading

import numpy as np

from app import create_app
from retrieval.bundle import current_path
from retrieval.data import normalise_item


def test_deleted_items_disappear_at_once_and_from_the_next_version(build, open_service):
    service = open_service(build(retrieval={"n_candidates": 20}))
    client = create_app(deps=service).test_client()
    victim = client.post("/recommend", json={"user_id": "u2", "k": 20}).get_json()["items"][0]["item_id"]
    assert client.delete(f"/items/{victim}").get_json()["deleted"] is True
    for n in range(5):
        items = client.post("/recommend", json={"user_id": "u2", "k": 20, "event_id": f"d{n}"}).get_json()["items"]
        assert victim not in {i["item_id"] for i in items}
    missing = client.delete("/items/never-existed")
    assert missing.status_code == 404 and missing.get_json()["error"]["message"] == \
        "item_id 'never-existed' is not in the catalog"
    summary = client.post("/admin/rebuild").get_json()
    assert summary["rebuilt"] is True and victim not in service.catalog.row_of
    assert service.catalog.bundle.version == summary["index_version"] == summary["version"]


def test_a_service_opened_without_the_build_steps_answers_a_rebuild_with_a_clear_503(build, store):
    from serving.service import Service

    service = Service.open(build(), store=store, start_threads=False)  # build=None: no pipeline injected
    try:
        answer = create_app(deps=service).test_client().post("/admin/rebuild")
        assert answer.status_code == 503 and "without the build steps" in answer.get_json()["error"]["message"]
    finally:
        service.close()


def test_a_new_item_moves_from_the_fresh_buffer_into_annoy(build, open_service):
    service = open_service(build(retrieval={"n_candidates": 20, "fresh_candidates": 5}))
    client = create_app(deps=service).test_client()
    first_version = service.catalog.bundle.version
    assert client.put("/items/new-1", json={"category": "shoes", "title": "trail runner"}).status_code == 200
    row = service.catalog.row_of["new-1"]
    assert row >= service.catalog.n_base  # fresh buffer
    assert "new-1" in {i["item_id"]
                       for i in client.post("/recommend", json={"user_id": "new", "k": 30}).get_json()["items"]}
    assert client.post("/admin/rebuild").get_json()["rebuilt"] is True
    catalog = service.catalog
    assert catalog.bundle.version != first_version and catalog.row_of["new-1"] < catalog.n_base  # in Annoy now
    assert catalog.bundle.space == first_version  # same embedding space: user vectors still valid
    rows, _ = catalog.search(catalog.vector(catalog.row_of["new-1"]), 5, 0)  # Annoy only
    assert catalog.row_of["new-1"] in rows.tolist()
    assert client.post("/admin/rebuild").get_json()["rebuilt"] is False  # nothing new to fold


def test_rebuild_and_swap_under_concurrent_requests_give_no_errors(build, open_service):
    service = open_service(build(retrieval={"n_candidates": 50}))
    client_errors: list = []
    stop = threading.Event()

    done: dict = {}

    def traffic(user, client):
        n = 0
        while not stop.is_set():
            response = client.post("/recommend", json={"user_id": user, "k": 10})
            if response.status_code != 200 or len(response.get_json()["items"]) != 10:
                client_errors.append((user, response.status_code, response.get_data(as_text=True)[:200]))
            elif n % 3 == 0:
                body = response.get_json()
                fb = client.post("/feedback", json={"event_id": body["event_id"],
                                                    "item_id": body["items"][0]["item_id"], "reward": 1})
                if fb.status_code != 200:
                    client_errors.append((user, "feedback", fb.status_code))
            n += 1
        done[user] = n

    # apps are made here: CPython 3.11's compiler is not safe to call from several threads at once
    # (werkzeug compiles each route), which once killed a traffic thread before it sent anything
    threads = [threading.Thread(target=traffic, args=(u, create_app(deps=service).test_client()))
               for u in ("u1", "u4", "stranger")]
    for t in threads:
        t.start()
    versions = {service.catalog.bundle.version}
    try:
        admin = create_app(deps=service).test_client()
        for n in range(3):
            assert admin.put(f"/items/swap-{n}", json={"category": "books", "title": f"b{n}"}).status_code == 200
            summary = service.rebuild()
            assert summary is not None
            versions.add(service.catalog.bundle.version)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a thread hung (a deadlock?)"
    assert not client_errors, client_errors[:3]
    assert len(done) == 3 and min(done.values()) > 0, done  # every traffic thread ran to the end
    assert len(versions) == 4 and current_path(service.config.data.path).name in versions


def test_a_second_service_picks_up_a_version_built_elsewhere(build, open_service):
    config = build()
    builder, watcher = open_service(config), open_service(config)
    create_app(deps=builder).test_client().put("/items/elsewhere", json={"category": "books"})
    builder.rebuild()
    assert watcher.catalog.bundle.version != builder.catalog.bundle.version
    assert watcher.reload() is True  # what its index-watch task does every index.reload_check_s
    assert watcher.catalog.bundle.version == builder.catalog.bundle.version
    assert "elsewhere" in watcher.catalog.row_of


def test_two_threads_that_find_a_new_version_at_once_load_it_once(build, open_service, monkeypatch):
    """The rebuild's own reload and the index-watch task met: both loaded the whole catalog (at
    1M items, twice the work and memory). The second re-checks once it has the swap lock."""
    import serving.service as service_module

    config = build()
    builder, watcher = open_service(config), open_service(config)
    create_app(deps=builder).test_client().put("/items/elsewhere", json={"category": "books"})
    builder.rebuild()
    loading, release, waiting = threading.Event(), threading.Event(), threading.Event()
    loads = []
    real_load = service_module.current_catalog

    def held_load(*args):
        loads.append(threading.current_thread().name)
        loading.set()
        assert release.wait(60)
        return real_load(*args)

    class WatchedLock:  # tells when a second thread waits for the swap lock
        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            if not self.lock.acquire(blocking=False):
                waiting.set()
                self.lock.acquire()

        def __exit__(self, *exc):
            self.lock.release()

    monkeypatch.setattr(service_module, "current_catalog", held_load)
    watcher._swap_lock = WatchedLock(watcher._swap_lock)
    results = {}
    first = threading.Thread(target=lambda: results.update(first=watcher.reload()), name="first")
    first.start()
    assert loading.wait(60)
    second = threading.Thread(target=lambda: results.update(second=watcher.reload()), name="second")
    second.start()
    assert waiting.wait(60)  # the second found the version new too, and waits while the first loads it
    release.set()
    first.join(60)
    second.join(60)
    assert results == {"first": True, "second": False} and loads == ["first"]
    assert watcher.catalog.bundle.version == builder.catalog.bundle.version


def test_a_full_build_swapped_in_under_traffic_keeps_users_personal(build, open_service, store, small_world_files):
    from conftest import NOW

    from banditrec.build import run_build

    config = build(retrieval={"n_candidates": 50})
    service = open_service(config)
    problems: list = []
    stop = threading.Event()

    def traffic():
        client = create_app(deps=service).test_client()
        while not stop.is_set():
            body = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
            if body.get("strategy") != "personalized" or len(body.get("items", [])) != 5:
                problems.append(body)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        first = service.catalog.bundle.version
        run_build(config, store, catalog=small_world_files["items.jsonl"], users=small_world_files["users.jsonl"],
                  interactions=small_world_files["interactions.csv"], now=NOW, progress=False)
        assert service.reload() is True and service.catalog.bundle.space != first
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a thread hung (a deadlock?)"
    assert not problems, problems[:2]


def test_changes_embedded_in_another_space_are_embedded_again_in_one_batch_in_stream_order(build, open_service,
                                                                                         monkeypatch):
    """A sync (and a reload, which replays the stream the same way) embeds every item that needs it
    in one call, then applies the changes in their order, each moving the cursor."""
    service = open_service(build())
    catalog, store = service.catalog, service.store
    calls = []
    embed = catalog.embedder.embed
    monkeypatch.setattr(catalog.embedder, "embed", lambda items, *a, **k: calls.append(
        [i["item_id"] for i in items]) or embed(items, *a, **k))
    kept = np.full(catalog.dim, 1.0 / np.sqrt(catalog.dim), np.float32)  # embedded in the served space: kept
    red, green, blue = (normalise_item({"item_id": i, "title": f"{colour} boot", "category": "shoes"})
                        for i, colour in (("x1", "red"), ("x2", "green"), ("x1", "blue")))
    cursors = [store.append_item(red, kept, "an-older-space"), store.append_item(green, kept, catalog.space),
               store.append_item({"item_id": "x1", "deleted": True}, None),
               store.append_item(blue, kept, "an-older-space")]
    service.sync_catalog(force=True)
    assert calls == [["x1", "x1"]]  # red and blue, together
    assert catalog.cursor == cursors[-1]
    assert [catalog.row_of["x2"], catalog.row_of["x1"]] == [catalog.n_base + 1, catalog.n_base + 2]
    np.testing.assert_array_equal(catalog.vector(catalog.row_of["x2"]), kept)
    np.testing.assert_allclose(catalog.vector(catalog.row_of["x1"]), embed([blue])[0], atol=1e-6)
