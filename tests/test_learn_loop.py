"""The separate learner (serving/learn_loop.py) on a real Redis: one learner at a time, a lost
lock pauses learning instead of ending it, snapshots never bury a newer version."""

from __future__ import annotations

import threading
import time

from app import create_app
from serving.learn_loop import LOCK, LearnerProcess


def _two_workers(build, open_service, **sections):
    """A built deployment in multi-worker mode: the service serves, a LearnerProcess learns."""
    config = build(server={"workers": 2}, **sections)
    service = open_service(config)
    return config, service, create_app(deps=service).test_client()


def _reward(client, user="u3"):
    body = client.post("/recommend", json={"user_id": user, "k": 3}).get_json()
    item = body["items"][0]["item_id"]
    assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": item,
                                           "reward": 1.0}).status_code == 200


def test_workers_do_not_learn_the_learner_does(build, open_service, store):
    config, service, client = _two_workers(build, open_service)
    assert not service.learns and not service.learner.enabled
    for user in ("u1", "u2", "u3"):
        _reward(client, user)
    assert service.learner.learned == 0  # the worker recorded them, nothing more
    learner = LearnerProcess(config, store)
    try:
        assert learner.step() == 3
        assert learner.learner.learned == 3 and store.learner_progress()["t"] == learner.learner.total
        models = [learner.learner.model, *(learner.learner.replicas.models if learner.learner.replicas else ())]
        assert all(m.linear is None for m in models)  # it scores nothing: no copies of the weights to keep
        assert learner.step(block_ms=50) == 0  # nothing new: it waited on the stream
        version = learner.learner.snapshot(config.snapshot.keep)
        assert service.adopt_newer_model() and service.learner.version == version
    finally:
        learner.close()


def test_one_learner_at_a_time_and_a_lost_lock_pauses_then_resumes(build, open_service, store, monkeypatch):
    config, service, client = _two_workers(build, open_service)
    first, second = LearnerProcess(config, store), LearnerProcess(config, store)
    stop_first, stop_second = threading.Event(), threading.Event()
    runner = threading.Thread(target=first.run, args=(stop_first,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not first._held.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first._held.is_set()
        attempts, acquire_lock = [], store.acquire_lock

        def counted(*args, **kwargs):
            attempts.append(acquire_lock(*args, **kwargs))
            return attempts[-1]

        monkeypatch.setattr(store, "acquire_lock", counted)
        waiter = threading.Thread(target=lambda: second.acquire(stop_second, poll_s=0.05))
        waiter.start()
        deadline = time.monotonic() + 10
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(attempts) >= 3 and not any(attempts)  # it tried, and the lock was taken every time
        assert not second._held.is_set()
        stop_second.set()
        waiter.join(5)
        assert not waiter.is_alive()
        monkeypatch.setattr(store, "acquire_lock", acquire_lock)

        token = first._token
        store.client.delete(store.key("lock", "{" + LOCK + "}"))  # as if it had expired during an outage
        deadline = time.monotonic() + 10
        while first._token == token and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first._token != token  # noticed the loss, and took the lock again (a new token)
        _reward(client)  # learned once the first learner holds the lock again
        deadline = time.monotonic() + 15
        while first.learner.learned < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.learner.learned == 1 and first._held.is_set()
    finally:
        stop_first.set()
        runner.join(30)
        second.close()
    assert not runner.is_alive()
    assert store.client.get(store.key("lock", "{" + LOCK + "}")) is None  # released on the way out


def test_a_snapshot_never_buries_a_newer_version(build, open_service, store):
    config, service, client = _two_workers(build, open_service, model={"warm_start": True})  # v1: the build's
    learner = LearnerProcess(config, store)
    try:
        _reward(client)
        learner.step()
        ours = learner.learner.version
        rollback = store.rollback_snapshot(ours, store.reward_head(), keep=10)  # written meanwhile
        assert store.put_snapshot(b"x", {"cursor": "0-0"}, 10, expect_latest=ours) is None
        assert learner.learner.snapshot(10) == ours and store.latest_version() == rollback  # not buried
        assert learner.adopt_newer() and learner.learner.version == rollback
        _reward(client, "u4")
        learner.step()
        assert learner.learner.snapshot(10) > rollback  # learning goes on from the rollback
    finally:
        learner.close()


def test_logging_only_learner_waits_instead_of_spinning(build, open_service, store):
    config, service, client = _two_workers(build, open_service, learning={"mode": "logging_only"})
    learner = LearnerProcess(config, store)
    try:
        _reward(client)
        started = time.monotonic()
        steps = 0
        while time.monotonic() - started < 0.5:
            learner.step(block_ms=100)
            steps += 1
        assert steps <= 6 and learner.learner.learned == 0
    finally:
        learner.close()


def test_banditrec_learn_refuses_when_the_serving_process_learns(tmp_path, capsys):
    from banditrec.cli import main

    assert main(["learn", "--data-dir", str(tmp_path)]) == 2  # server.workers = 1: it would be a second learner
    assert "learns in its serving process" in capsys.readouterr().err
