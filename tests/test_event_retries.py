"""`POST /events` with an `event_id`: a retry after a 503 or a timeout is counted once in the
stream, the user's state, the vector, the item counts and the experiment's counters (real
Redis; a failure is injected by making one store call raise as a lost connection would,
before or after its writes reached Redis)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from app import create_app
from serving.events import EVENT_LEASE_S
from serving.experiment import arm_of
from serving.userstate import long_term_step
from store import StoreError

STEPS = {"stream": "append_event", "user": "record_user_event", "counts": "event_counts",  # the vector, the
         "session": "count_session"}                                                     # counts, the session


@pytest.fixture
def client(build, open_service):
    return create_app(deps=open_service(build())).test_client()


def _service(client):
    return client.application.extensions["banditrec"]


def _tally(service, user_id: str, item_id: str) -> dict:
    """Everything one event moves, as it is now."""
    store = service.store
    state = store.user_state(user_id)
    (events,), (engaged,), _, _, _ = store.item_counts([item_id])
    salt = service.config.experiment.salt
    return {"stream": store.events_length(), "n": state["n"], "recent": len(state["recent"]),
            "vector": state["vectors"].get(service.catalog.space),
            "trend": store.client.zscore(store._pkey("trend", "global"), item_id),
            "events": events, "engaged": engaged,
            "arm_events": store.arm_counts(salt).get(arm_of(user_id, service.config.experiment), {}).get("events", 0)}


def _once_more(service, before: dict, item_id: str, ts: float) -> dict:
    """What `_tally` says after exactly one click on `item_id` at `ts`."""
    row = service.catalog.row_of[item_id]
    weights, realtime = service.config.embedding.event_weights, service.config.realtime
    step = long_term_step(service.catalog.vector(row), weights["click"] / max(weights.values()), realtime)
    bump = math.log(weights["click"]) + ts * math.log(2.0) / realtime.trending_half_life_s
    return {**before, "stream": before["stream"] + 1, "n": before["n"] + 1, "recent": before["recent"] + 1,
            "vector": step(before["vector"]), "events": (before["events"] or 0) + 1,
            "engaged": (before["engaged"] or 0) + 1, "arm_events": before["arm_events"] + 1,
            "trend": bump if before["trend"] is None else float(np.logaddexp(before["trend"], bump))}


def _same(got: dict, want: dict) -> None:
    for key in want:
        if key == "vector":
            assert np.allclose(got[key], want[key], atol=1e-6), key
        elif key == "trend":
            assert math.isclose(got[key], want[key], rel_tol=1e-12), (key, got[key], want[key])
        else:
            assert got[key] == want[key], (key, got[key], want[key])


def test_a_repeated_event_id_is_recorded_once(client):
    service = _service(client)
    ts = time.time() - 10
    event = {"user_id": "u5", "item_id": "i12", "type": "click", "event_id": "ev-1", "timestamp": ts}
    before = _tally(service, "u5", "i12")
    first = client.post("/events", json=event)
    assert first.status_code == 200 and first.get_json() == \
        {"status": "recorded", "item_known": True, "event_id": "ev-1", "duplicate": False}
    once = _once_more(service, before, "i12", ts)
    _same(_tally(service, "u5", "i12"), once)
    second = client.post("/events", json=event)
    assert second.status_code == 200 and second.get_json()["duplicate"] is True
    _same(_tally(service, "u5", "i12"), once)
    # the same id from another user, or another id: other events
    assert client.post("/events", json={**event, "user_id": "u6"}).get_json()["duplicate"] is False
    assert client.post("/events", json={**event, "event_id": "ev-2"}).get_json()["duplicate"] is False
    assert _tally(service, "u5", "i12")["n"] == once["n"] + 1


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_retry_after_a_failed_step_does_the_rest_once(client, monkeypatch, step, when):
    """The attempt fails at `step`: its call raises before its writes reach Redis ("before",
    a refused connection) or after ("after", the answer lost). The retry is recorded, and
    everything counts the event exactly once."""
    service = _service(client)
    store = service.store
    real = getattr(store, STEPS[step])
    failures = []

    def failing(*args, **kwargs):
        if not failures:
            failures.append(step)
            if when == "after":
                real(*args, **kwargs)
            raise StoreError("redis unavailable: injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, STEPS[step], failing)
    ts = time.time() - 10
    event = {"user_id": "u7", "item_id": "i20", "type": "click", "event_id": f"retry-{step}-{when}", "timestamp": ts}
    before = _tally(service, "u7", "i20")
    first = client.post("/events", json=event)
    if step == "session":  # best effort: the event is recorded all the same
        assert first.status_code == 200
    else:
        assert first.status_code == 503 and first.get_json()["error"]["code"] == "unavailable"
    assert failures == [step]
    retry = client.post("/events", json=event)
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["duplicate"] is (step != "stream" or when == "after")
    _same(_tally(service, "u7", "i20"), _once_more(service, before, "i20", ts))
    again = client.post("/events", json=event)  # and once more, after a success: nothing more
    assert again.get_json()["duplicate"] is True
    _same(_tally(service, "u7", "i20"), _once_more(service, before, "i20", ts))


def test_a_vector_another_event_moved_meanwhile_is_stepped_again_from_where_it_is(client, monkeypatch):
    """The event's step is written only over the vector it read with the user's state; when
    another event wrote the vector in between, the step is taken again from that one."""
    service = _service(client)
    store, space = service.store, service.catalog.space
    before = store.user_state("u10")["vectors"].get(space)
    moved = np.linspace(-1.0, 1.0, len(service.catalog.vector(0))).astype(np.float32)
    real = store.record_user_event

    def then_another_event(user_id, **kwargs):
        answer = real(user_id, **kwargs)
        store.client.hset(store._ukey("user", user_id), f"vec:{space}", moved.tobytes())
        return answer

    monkeypatch.setattr(store, "record_user_event", then_another_event)
    event = {"user_id": "u10", "item_id": "i20", "type": "click", "timestamp": time.time() - 10}
    assert client.post("/events", json=event).status_code == 200
    weights = service.config.embedding.event_weights
    step = long_term_step(service.catalog.vector(service.catalog.row_of["i20"]),
                          weights["click"] / max(weights.values()), service.config.realtime)
    got = store.user_state("u10")["vectors"][space]
    assert np.allclose(got, step(moved), atol=1e-6)
    assert not np.allclose(got, step(before), atol=1e-3)  # (not the step of the vector first read)


def test_a_session_redis_refuses_leaves_the_event_recorded_and_counted(client):
    """The session goes to Redis with the vector and the item's counts: when Redis refuses it
    (here its key holds a string), the event is still recorded and counted, and only the
    experiment's counters miss it (best effort, as before)."""
    service = _service(client)
    store = service.store
    store.client.set(store.key("sess", service.config.experiment.salt, "{u12}"), "not a hash")
    ts = time.time() - 10
    before = _tally(service, "u12", "i20")
    answer = client.post("/events", json={"user_id": "u12", "item_id": "i20", "type": "click", "timestamp": ts})
    assert answer.status_code == 200, answer.get_json()
    _same(_tally(service, "u12", "i20"), {**_once_more(service, before, "i20", ts), "arm_events": before["arm_events"]})


def test_an_attempt_under_way_keeps_a_concurrent_retry_out(client):
    service = _service(client)
    event = {"user_id": "u8", "item_id": "i3", "type": "view", "event_id": "busy-1"}
    held = service.store.take_once("u8", "busy-1", EVENT_LEASE_S, 3600)  # another attempt, still running
    busy = client.post("/events", json=event)
    assert busy.status_code == 409 and "being recorded by another request" in busy.get_json()["error"]["message"]
    assert service.store.take_once("u8", "busy-1", EVENT_LEASE_S, 3600) is None  # the lease is still held
    service.store.release_once(held)
    done = client.post("/events", json=event)
    assert done.status_code == 200 and done.get_json()["duplicate"] is False


def test_a_lease_runs_out_by_itself(store):
    """An attempt that died holding the lease keeps retries out only for the lease's length."""
    assert store.take_once("u9", "died", 0.05, 60) is not None  # and never released
    deadline = time.monotonic() + 10
    while (later := store.take_once("u9", "died", 0.05, 60)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert later is not None and later.done == frozenset()


@pytest.mark.parametrize("event_id", ["", "a b", "x" * 129, 7, "ü"])
def test_a_bad_event_id_is_400(client, event_id):
    response = client.post("/events", json={"user_id": "u1", "item_id": "i1", "type": "view", "event_id": event_id})
    assert response.status_code == 400 and "event_id must be" in response.get_json()["error"]["message"]
