"""Rebuilds and refits a serving process runs in a process of their own (banditrec/build/apart.py)."""

import os

import pytest

from app import create_app
from banditrec.build import apart, incremental
from banditrec.build.apart import SERVED_STEPS, BuildProcessError, run_apart
from banditrec.errors import DataError
from serving.service import Service
from tests.conftest import make_config, url_of


def _served(build, store, tmp_path) -> Service:
    """A service as `app.create_app` opens one (SERVED_STEPS), on the test store's Redis and prefix."""
    config = build()
    config = config.replace(redis={"url": url_of(store)})
    return Service.open(config, store=store, start_threads=False, build=SERVED_STEPS)


def test_a_rebuild_folds_new_items_in_a_build_process_and_the_service_serves_the_new_version(build, store, tmp_path,
                                                                                             monkeypatch):
    service = _served(build, store, tmp_path)
    try:
        def not_here(*args, **kwargs):
            raise AssertionError("the incremental build ran in the serving process")

        monkeypatch.setattr(incremental, "_incremental_build", not_here)  # the spawned child imports its own
        client = create_app(deps=service).test_client()
        first = service.catalog.bundle.version
        assert client.put("/items/new-1", json={"category": "shoes", "title": "trail runner"}).status_code == 200
        summary = client.post("/admin/rebuild").get_json()
        assert summary["rebuilt"] is True and summary["changes"] == 1
        catalog = service.catalog
        assert catalog.bundle.version == summary["index_version"] != first
        assert catalog.row_of["new-1"] < catalog.n_base  # in the index now, not the fresh buffer
    finally:
        service.close()


def test_no_build_process_is_started_when_nothing_waits_to_be_folded(build, store, tmp_path, monkeypatch):
    service = _served(build, store, tmp_path)
    try:
        def no_process(*args, **kwargs):
            raise AssertionError("a build process was started with nothing to fold")

        monkeypatch.setattr(apart, "run_apart", no_process)
        assert service.rebuild() is None
        assert store.read_items(count=1) == []  # (nothing was ever added through the API)
    finally:
        service.close()


def _raises_data_error(config, store):
    raise DataError(f"no catalog under prefix {store.prefix}")


def _dies(config, store):
    os._exit(3)


def test_what_the_build_raised_in_its_process_is_raised_to_the_caller(store, tmp_path):
    config = make_config(tmp_path, redis={"url": url_of(store)})
    with pytest.raises(DataError, match=f"no catalog under prefix {store.prefix}"):  # the store's prefix, not br
        run_apart(_raises_data_error, config, store)


def test_a_build_process_that_dies_without_answering_is_a_clear_error(store, tmp_path):
    config = make_config(tmp_path, redis={"url": url_of(store)})
    with pytest.raises(BuildProcessError, match="exited with code 3 before it answered"):
        run_apart(_dies, config, store)


def test_a_refit_runs_its_full_build_in_a_build_process(build, store, tmp_path, small_world, monkeypatch):
    from banditrec.build import full

    config = build().replace(index={"refit_min_events": 100, "refit_growth": 0.0}, redis={"url": url_of(store)})
    service = Service.open(config, store=store, start_threads=False, build=SERVED_STEPS)
    try:
        def not_here(*args, **kwargs):
            raise AssertionError("the refit's full build ran in the serving process")

        monkeypatch.setattr(full, "_full_build", not_here)
        client = create_app(deps=service).test_client()
        for user_id, item_id, kind, ts in small_world.interactions[:150]:
            assert client.post("/events", json={"user_id": user_id, "item_id": item_id, "type": kind,
                                                "timestamp": ts}).status_code == 200
        summary = service.refit()
        assert summary is not None and summary["interactions"] == len(small_world.interactions) + 150
        assert service.catalog.space == summary["version"]
    finally:
        service.close()
