"""Rebuilds: what the catalog file and API upserts each contribute, and which user vectors count."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NOW, make_config

from app import create_app
from banditrec.build import run_build
from banditrec.errors import DataError
from retrieval.bundle import current_path, read_items


def _rebuild(config, store, files):
    run_build(config, store, catalog=files["items.jsonl"], users=files["users.jsonl"],
              interactions=files["interactions.csv"], now=NOW, progress=False)
    return {i["item_id"]: i for i in read_items(current_path(config.data.path))}


def test_api_upserts_override_the_file_once_and_api_only_items_stay(build, open_service, store, small_world_files):
    config = build()
    client = create_app(deps=open_service(config)).test_client()
    assert client.put("/items/i5", json={"category": "from-api", "in_stock": True}).status_code == 200
    assert client.put("/items/api-only", json={"category": "from-api"}).status_code == 200
    file_i5 = next(json.loads(line) for line in Path(small_world_files["items.jsonl"]).read_text().splitlines()
                   if '"i5"' in line)

    second = _rebuild(config, store, small_world_files)  # the PUT came after the last build: it wins
    assert second["i5"]["category"] == "from-api" and "api-only" in second
    third = _rebuild(config, store, small_world_files)  # now the file is newer than that PUT
    assert third["i5"]["category"] == file_i5["category"] and "api-only" in third


def test_each_index_version_reads_user_vectors_of_its_own_space(build, open_service, store, small_world_files):
    config = build()
    old = open_service(config)
    client = create_app(deps=old).test_client()
    assert client.post("/recommend", json={"user_id": "u3"}).get_json()["strategy"] == "personalized"
    first = old.catalog.space
    _rebuild(config, store, small_world_files)  # a new space; the previous one stays for the old index
    second = current_path(config.data.path).name
    assert set(store.user_state("u3")["vectors"]) == {first, second}
    assert client.post("/recommend", json={"user_id": "u3"}).get_json()["strategy"] == "personalized"
    fresh = open_service(config)
    assert fresh.catalog.space == second
    assert create_app(deps=fresh).test_client().post("/recommend", json={"user_id": "u3"}).get_json()["strategy"] \
        == "personalized"
    _rebuild(config, store, small_world_files)  # the oldest space goes
    assert set(store.user_state("u3")["vectors"]) == {second, current_path(config.data.path).name}


def test_a_rebuild_without_a_users_history_has_no_vector_for_them(tmp_path, store, small_world_files, open_service):
    config = make_config(tmp_path)
    _rebuild(config, store, small_world_files)
    log = tmp_path / "log.csv"
    lines = Path(small_world_files["interactions.csv"]).read_text().splitlines()
    log.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if not ln.startswith("u3,")]) + "\n")
    run_build(config, store, catalog=small_world_files["items.jsonl"], users=small_world_files["users.jsonl"],
              interactions=log, now=NOW, progress=False)
    u3 = store.user_state("u3")
    assert current_path(config.data.path).name not in u3["vectors"] and u3["profile"]["age_group"]
    client = create_app(deps=open_service(config)).test_client()
    assert client.post("/recommend", json={"user_id": "u3"}).get_json()["strategy"] == "cold_start"


def test_a_reward_that_cannot_be_learned_is_set_aside(build, open_service, store):
    service = open_service(build())
    client = create_app(deps=service).test_client()
    store.append_reward({"event_id": "broken", "item_id": "i1", "reward": 1.0, "p": 0.5}, maxlen=10_000)  # no features
    body = client.post("/recommend", json={"user_id": "u1", "k": 1}).get_json()
    reward = {"event_id": body["event_id"], "item_id": body["items"][0]["item_id"], "reward": 1}
    assert client.post("/feedback", json=reward).status_code == 200
    assert service.learner.learned == 1  # the good reward behind the broken one was learned
    [dead] = store.dead_letters()
    assert dead["entry"]["event_id"] == "broken" and "KeyError" in dead["error"]
    assert client.get("/learning").get_json()["dead_letters"] == 1
    assert "banditrec_dead_letters 1.0" in client.get("/metrics").get_data(as_text=True)


def test_a_full_build_learns_from_events_recorded_through_the_api(build, open_service, store, small_world_files):
    config = build()
    client = create_app(deps=open_service(config)).test_client()
    for n in range(6):
        assert client.post("/events", json={"user_id": "api-user", "item_id": f"i{n}", "type": "click",
                                            "timestamp": NOW - 60 * n}).status_code == 200
    state = store.user_state("api-user")
    assert state["n"] == 6
    _rebuild(config, store, small_world_files)  # the service keeps running meanwhile
    space = current_path(config.data.path).name
    rebuilt = store.user_state("api-user")
    assert rebuilt["n"] == 6 and space in rebuilt["vectors"] and rebuilt["taste"]
    fresh = create_app(deps=open_service(config)).test_client()
    assert fresh.post("/recommend", json={"user_id": "api-user"}).get_json()["strategy"] == "personalized"


def test_cli_incremental_build_folds_api_items(build, open_service, store, monkeypatch, redis_url):
    from banditrec.cli import main

    config = build()
    client = create_app(deps=open_service(config)).test_client()
    client.put("/items/cli-new", json={"category": "books"})
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BANDITREC_REDIS_PREFIX", store.prefix)
    monkeypatch.setenv("BANDITREC_DATA_DIR", str(config.data.path))
    before = current_path(config.data.path).name
    assert main(["build", "--incremental", "--no-progress"]) == 0
    after = current_path(config.data.path)
    assert after.name != before and "cli-new" in {i["item_id"] for i in read_items(after)}
    assert main(["build", "--incremental", "--no-progress"]) == 0 and current_path(config.data.path) == after


def test_a_full_build_never_lowers_counts_recorded_while_it_ran(build, open_service, store, small_world_files,
                                                                   monkeypatch):
    import banditrec.build.full as build_module

    config = build()
    client = create_app(deps=open_service(config)).test_client()
    for n in range(3):
        client.post("/events", json={"user_id": "busy", "item_id": f"i{n}", "type": "click"})
    original = build_module._user_records

    def records_with_events_meanwhile(*args, **kwargs):  # 3 more events arrive during the build
        for n in range(3, 6):
            client.post("/events", json={"user_id": "busy", "item_id": f"i{n}", "type": "click"})
        yield from original(*args, **kwargs)

    monkeypatch.setattr(build_module, "_user_records", records_with_events_meanwhile)
    _rebuild(config, store, small_world_files)
    assert store.user_state("busy")["n"] == 6


def test_users_are_written_before_current_moves(build, open_service, store, small_world_files, monkeypatch):
    import banditrec.build.full as build_module

    config = build()
    before = current_path(config.data.path).name

    def failing_users(*args, **kwargs):
        raise RuntimeError("redis went away while writing users")

    monkeypatch.setattr(store, "put_users", failing_users)
    with pytest.raises(RuntimeError):
        build_module.run_build(config, store, catalog=small_world_files["items.jsonl"],
                               interactions=small_world_files["interactions.csv"], now=NOW, progress=False)
    assert current_path(config.data.path).name == before  # a failed build is never served
    client = create_app(deps=open_service(config)).test_client()
    assert client.post("/recommend", json={"user_id": "u3"}).get_json()["strategy"] == "personalized"


def test_segment_popularity_counts_profiles_set_through_the_api(build, open_service, store, small_world_files):
    config = make_config(build().data.path.parent)  # data dir as built; profiles only through the API
    client = create_app(deps=open_service(config)).test_client()
    for user in ("u1", "u2", "u4"):
        client.put(f"/users/{user}", json={"age_group": "99+", "location": "MARS"})
    run_build(config, store, catalog=small_world_files["items.jsonl"],
              interactions=small_world_files["interactions.csv"], now=NOW, progress=False)
    assert store.top_popular(5, scope="seg:age_group=99+|location=MARS")


def test_api_changes_survive_incremental_then_full_builds(build, open_service, store, small_world_files):
    config = build()
    service = open_service(config)
    client = create_app(deps=service).test_client()
    client.put("/items/i5", json={"category": "changed-by-api"})
    client.delete("/items/i6")
    assert service.rebuild() is not None  # what the service does every index.rebuild_interval_s
    full = _rebuild(config, store, small_world_files)
    assert full["i5"]["category"] == "changed-by-api" and "i6" not in full


def test_items_embedded_in_another_space_are_embedded_again(build, open_service, store, small_world_files):
    config = build()
    old = open_service(config)
    create_app(deps=old).test_client().put("/items/during-build", json={"category": "books", "title": "a novel"})
    _rebuild(config, store, small_world_files)  # a new space; the item's vector is of the old one
    new = open_service(config)
    row = new.catalog.row_of["during-build"]
    item = {"item_id": "during-build", "category": "books", "title": "a novel", "description": "", "attributes": {}}
    expected = new.catalog.embedder.embed([item])[0]
    assert np.allclose(new.catalog.vector(row), expected, atol=1e-5)


def test_the_build_writes_each_items_events_and_engagements(build, store, small_world_files):
    build()
    rows = list(csv.DictReader(Path(small_world_files["interactions.csv"]).read_text().splitlines()))
    expected: dict[str, list[float]] = {}
    for row in rows:
        n, e = expected.setdefault(row["item_id"], [0.0, 0.0])
        expected[row["item_id"]] = [n + 1, e + (row["type"] != "view")]
    counts = {item_id: [n, e] for item_id, n, e in store.quality_counts(1_000_000)}
    assert counts == expected and any(e for _, e in counts.values()) and any(not e for _, e in counts.values())


def _feed_through_the_api(client, world, n_events: int) -> None:
    """The small world's items and its first `n_events` interactions, sent as a client would."""
    for item in world.items:
        fields = {k: v for k, v in item.items() if k != "item_id"}
        assert client.put(f"/items/{item['item_id']}", json=fields).status_code == 200
    for user_id, item_id, kind, ts in world.interactions[:n_events]:
        assert client.post("/events", json={"user_id": user_id, "item_id": item_id, "type": kind,
                                            "timestamp": ts}).status_code == 200


def test_a_build_without_a_catalog_refits_what_the_api_received(tmp_path, open_service, store, small_world):
    """`banditrec build` with no files: the items and events received through the API become a
    new embedding space, with user vectors in it and the quality counts the build writes."""
    config = make_config(tmp_path, realtime={"ema_alpha": 0.0})
    service = open_service(config)
    client = create_app(deps=service).test_client()
    with pytest.raises(DataError, match="no items were received"):
        run_build(config, store, now=NOW, progress=False)
    _feed_through_the_api(client, small_world, 3000)
    summary = run_build(config, store, now=NOW, progress=False)
    assert summary["items"] == len(small_world.items) and summary["interactions"] == 3000
    assert service.reload() and service.catalog.space == summary["version"]
    user = small_world.interactions[0][0]
    assert store.user_state(user)["vectors"].get(summary["version"]) is not None  # built from the events
    assert sum(n for _, n, _ in store.quality_counts(1_000_000)) == 3000
    body = client.post("/recommend", json={"user_id": user, "k": 5}).get_json()
    assert body["strategy"] == "personalized" and len(body["items"]) == 5


def test_the_service_refits_when_enough_events_arrived_or_time_passed(tmp_path, open_service, store, small_world):
    config = make_config(tmp_path, index={"refit_min_events": 500, "refit_growth": 0.5,
                                          "refit_interval_s": 3600.0})
    service = open_service(config)
    client = create_app(deps=service).test_client()
    assert service.refit() is None  # nothing received yet
    _feed_through_the_api(client, small_world, 400)
    assert service.refit() is None  # fewer than refit_min_events
    _feed_through_the_api(client, small_world, 1000)  # 1400 events, none built from yet
    first = service.refit()
    assert first is not None and first["interactions"] == 1400 and service.catalog.space == first["version"]
    assert service.refit() is None  # nothing new
    for user_id, item_id, kind, ts in small_world.interactions[1400:2000]:  # 600 new: < 0.5 x 1400
        client.post("/events", json={"user_id": user_id, "item_id": item_id, "type": kind, "timestamp": ts})
    assert service.refit() is None
    later = time.time() + 3601.0
    service.clock = lambda: later  # an hour after the first refit (built at the service's clock)
    second = service.refit()
    assert second is not None and second["interactions"] == 2000 and service.catalog.space == second["version"]


def test_a_refit_keeps_the_history_of_the_files_the_last_full_build_read(build, open_service, store, small_world,
                                                                       small_world_files, tmp_path):
    config = build()
    n_file = len(small_world.interactions)
    service = open_service(config.replace(index={"refit_min_events": 100, "refit_growth": 0.0}))
    client = create_app(deps=service).test_client()
    for user_id, item_id, kind, ts in small_world.interactions[:150]:
        client.post("/events", json={"user_id": user_id, "item_id": item_id, "type": kind, "timestamp": ts})
    summary = service.refit()
    assert summary is not None and summary["interactions"] == n_file + 150  # the file's history, then the API's
    assert sum(n for _, n, _ in store.quality_counts(1_000_000)) == n_file + 150


def test_a_refit_whose_file_is_gone_says_so_and_backs_off(tmp_path, open_service, store, small_world_files):
    import shutil

    moved = {name: tmp_path / f"copy-{name}" for name in ("items.jsonl", "interactions.csv")}
    for name, path in moved.items():
        shutil.copy(small_world_files[name], path)
    config = make_config(tmp_path, index={"refit_min_events": 1, "refit_growth": 0.0})
    run_build(config, store, catalog=moved["items.jsonl"], interactions=moved["interactions.csv"], now=NOW,
              progress=False)
    service = open_service(config)
    create_app(deps=service).test_client().post("/events", json={"user_id": "u1", "item_id": "i1", "type": "view"})
    moved["interactions.csv"].unlink()
    with pytest.raises(DataError, match="interactions file of the last full build .* is gone"):
        service.refit()
    assert service.refit() is None  # not retried at once: a full build every minute would cost more


def test_refits_count_events_past_the_streams_trim(tmp_path, open_service, store, small_world):
    config = make_config(tmp_path, realtime={"events_maxlen": 1000},
                         index={"refit_min_events": 500, "refit_growth": 0.0})
    service = open_service(config)
    client = create_app(deps=service).test_client()
    _feed_through_the_api(client, small_world, 1200)
    assert service.refit() is not None
    for user_id, item_id, kind, ts in small_world.interactions[1200:1800]:  # the stream stays ~1000 long
        client.post("/events", json={"user_id": user_id, "item_id": item_id, "type": kind, "timestamp": ts})
    assert store.events_length() < 1800 <= store.events_added()
    assert service.refit() is not None  # 600 more, though the stream did not grow
