"""Test traffic (`"test": true` on /recommend, what the dashboard's try-it panel sends): the
answer is a real one, its feedback is acknowledged, and nothing of it is learned, logged for
off-policy evaluation, closed with default rewards, or counted in the experiment or the items'
exposure. The same requests without the flag move every one of those (real Redis)."""

from __future__ import annotations

import pytest

from app import create_app


@pytest.fixture
def client(build, open_service):
    return create_app(deps=open_service(build(feedback={"aggregation": "earliest"}))).test_client()


def _traces(client) -> dict:
    service = client.application.extensions["banditrec"]
    store = service.store
    _, _, exposure, _, _ = store.item_counts(list(service.catalog.ids.take(range(len(service.catalog.ids)))))
    return {"arms": store.arm_counts(service.config.experiment.salt), "decision_log": len(store.read_decision_log()),
            "rewards": len(store.read_rewards()), "learned": service.learner.learned,
            "pending": store.client.zcard(store.key("pending")), "exposure": sum(x or 0.0 for x in exposure)}


@pytest.mark.parametrize("test", [True, False])
def test_test_traffic_is_answered_and_leaves_no_trace(client, test):
    before = _traces(client)
    ask = {"user_id": "u4", "k": 5, **({"test": True} if test else {})}
    answer = client.post("/recommend", json=ask)
    assert answer.status_code == 200 and len(answer.get_json()["items"]) == 5
    assert answer.get_json().get("test", False) is test
    decision = answer.get_json()
    first, second = (item["item_id"] for item in decision["items"][:2])
    click = client.post("/feedback", json={"event_id": decision["event_id"], "item_id": first, "reward": 1})
    assert click.status_code == 200 and click.get_json()["status"] == "accepted"
    assert click.get_json().get("test", False) is test
    seen = client.post("/feedback", json={"event_id": decision["event_id"], "seen": [first, second]})
    assert seen.status_code == 200 and seen.get_json()["seen"] == 2
    wrong = client.post("/feedback", json={"event_id": decision["event_id"], "item_id": "not-shown", "reward": 1})
    assert wrong.status_code == 400  # validated like any feedback
    after = _traces(client)
    if test:
        assert after == before
    else:  # the same without the flag: counted, logged, queued to close, learned
        arm = decision["arm"]
        assert after["arms"][arm]["decisions"] == before["arms"].get(arm, {}).get("decisions", 0) + 1
        assert after["decision_log"] == before["decision_log"] + 1 and after["rewards"] == before["rewards"] + 1
        assert after["learned"] == before["learned"] + 1 and after["pending"] == before["pending"] + 1
        assert after["exposure"] > before["exposure"]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_test_flag_that_is_not_a_boolean_is_400(client, value):
    response = client.post("/recommend", json={"user_id": "u4", "test": value})
    assert response.status_code == 400 and "test must be true or false" in response.get_json()["error"]["message"]
