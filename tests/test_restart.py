"""What was learned survives: snapshots on close, and replay of the reward stream after a crash."""

from __future__ import annotations

import time

import numpy as np

from app import create_app

PROBE_SHARED = "shared |User age=25-34 taste=shoes |Context device=mobile"
PROBE_ACTIONS = [f"|Item id=i{n} cat=c{n % 5} |Sim s:0.{n}" for n in range(10)]


def _traffic(client, rounds: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        body = client.post("/recommend", json={"user_id": f"u{rng.integers(50)}", "k": 3,
                                               "event_id": f"s{seed}-{r}"}).get_json()
        item = body["items"][int(rng.integers(3))]["item_id"]
        assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": item,
                                               "reward": float(rng.integers(2))}).status_code == 200


def test_restart_keeps_the_model(build, open_service):
    config = build()
    first = open_service(config)
    _traffic(create_app(deps=first).test_client(), 40, seed=1)
    before = first.model.predict(PROBE_SHARED, PROBE_ACTIONS)
    assert np.ptp(before) > 0  # it learned something
    first.close()  # final snapshot
    second = open_service(config)
    assert second.learner.version >= 1 and second.learner.learned == 0  # nothing replayed
    np.testing.assert_array_equal(second.model.predict(PROBE_SHARED, PROBE_ACTIONS), before)


def test_crash_replays_rewards_newer_than_the_snapshot(build, open_service):
    config = build()
    first = open_service(config)
    client = create_app(deps=first).test_client()
    _traffic(client, 20, seed=2)
    first.learner.snapshot(keep=5)
    _traffic(client, 25, seed=3)
    expected = first.model.predict(PROBE_SHARED, PROBE_ACTIONS)
    # crash: no close, no final snapshot; the next process replays the 25 newer rewards
    second = open_service(config)
    assert second.learner.learned == 25
    np.testing.assert_allclose(second.model.predict(PROBE_SHARED, PROBE_ACTIONS), expected, rtol=0, atol=1e-6)


def test_duplicate_stream_entries_are_learned_once_also_on_replay(build, open_service, store):
    config = build()
    first = open_service(config)
    client = create_app(deps=first).test_client()
    body = client.post("/recommend", json={"user_id": "u1", "k": 2}).get_json()
    item = body["items"][0]["item_id"]
    assert client.post("/feedback",
                       json={"event_id": body["event_id"], "item_id": item, "reward": 1}).status_code == 200
    [(_, entry)] = store.read_rewards()
    store.append_reward(entry, maxlen=10_000)  # as if a retry appended it again after a crash
    assert first.learner.catch_up() == 0
    assert first.learner.learned == 1
    replay = open_service(config)  # no snapshot yet: replays the whole stream
    assert replay.learner.learned == 1
    np.testing.assert_allclose(replay.model.predict(PROBE_SHARED, PROBE_ACTIONS),
                               first.model.predict(PROBE_SHARED, PROBE_ACTIONS), atol=1e-6)


def test_snapshots_are_written_periodically_while_serving(build, store):
    from serving import Service

    config = build(snapshot={"interval_s": 0.2, "every_n_updates": 1_000_000})
    service = Service.open(config, store=store, start_threads=True)
    try:
        _traffic(create_app(deps=service).test_client(), 5, seed=4)
        deadline = time.monotonic() + 30
        while (store.list_snapshots() or [{}])[-1].get("learned") != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        meta = store.list_snapshots()[-1]
        assert meta["learned"] == 5 and meta["cursor"] == store.read_rewards()[-1][0]
    finally:
        service.close()


def test_thompson_replicas_replay_exactly_after_a_crash(build, open_service):
    config = build(exploration={"strategy": "thompson"})
    first = open_service(config)
    client = create_app(deps=first).test_client()
    _traffic(client, 10, seed=5)
    first.learner.snapshot(keep=5)
    _traffic(client, 15, seed=6)
    expected = first.learner.replicas.predict(PROBE_SHARED, PROBE_ACTIONS)
    # crash: the next process loads the snapshot and replays 15 rewards with the same Poisson draws
    second = open_service(config)
    assert second.learner.learned == 15
    np.testing.assert_allclose(second.learner.replicas.predict(PROBE_SHARED, PROBE_ACTIONS), expected, atol=1e-6)
