"""Inactive users are served pre-generated slates that keep their logged probabilities."""

from __future__ import annotations

import time

from app import create_app
from serving.pregen import refresh_due

# The test world's last events are about a year old: with a 30-day window every user is inactive.
INACTIVE = {"after_s": 30 * 86400.0, "refresh_s": 3600.0, "jitter": 0.2, "slate_size": 20}


def test_an_inactive_user_is_served_the_pre_generated_slate(build, open_service, store):
    service = open_service(build(inactive=INACTIVE))
    client = create_app(deps=service).test_client()
    first = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
    assert first["strategy"] == "personalized"  # nothing pre-generated yet: decided now, one requested
    assert store.get_pregen("u3") is None and refresh_due(service) == 1  # the background refresher's work
    cached = store.get_pregen("u3")
    assert len(cached["items"]) == 20
    second = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
    assert second["strategy"] == "pregenerated" and second["event_id"] != first["event_id"]
    assert [(i["item_id"], i["probability"]) for i in second["items"]] == \
        [(i["item_id"], i["probability"]) for i in cached["items"][:5]]
    # its reward is learned with the probability it was drawn with
    item = second["items"][2]
    assert client.post("/feedback", json={"event_id": second["event_id"], "item_id": item["item_id"],
                                          "reward": 1}).status_code == 200
    [(_, entry)] = store.read_rewards()
    assert entry["p"] == item["probability"] and entry["shared"] == cached["shared"]
    assert service.learner.learned == 1


def test_an_active_user_is_not_and_the_first_event_reactivates(build, open_service, store):
    service = open_service(build(inactive=INACTIVE))
    client = create_app(deps=service).test_client()
    client.post("/recommend", json={"user_id": "u4", "k": 5})
    refresh_due(service)
    assert store.get_pregen("u4") is not None
    assert client.post("/events", json={"user_id": "u4", "item_id": "i1", "type": "view"}).status_code == 200
    assert store.get_pregen("u4") is None  # active again
    for _ in range(3):
        assert client.post("/recommend", json={"user_id": "u4", "k": 5}).get_json()["strategy"] == "personalized"
    assert store.get_pregen("u4") is None


def test_due_slates_are_refreshed_with_jitter(build, open_service, store):
    service = open_service(build(inactive=INACTIVE))
    client = create_app(deps=service).test_client()
    for user in ("u1", "u2", "u5", "u6"):
        client.post("/recommend", json={"user_id": user, "k": 3})
    now = time.time()
    assert refresh_due(service, now=now) == 4
    dues = dict(store.client.zrange(store.key("pregen-due"), 0, -1, withscores=True))
    assert len(dues) == 4 and len(set(dues.values())) == 4  # spread, not all at once
    assert all(now + 0.75 * 3600 < due < now + 1.25 * 3600 for due in dues.values())
    before = store.get_pregen("u1")["generated_at"]
    assert refresh_due(service, now=now + 2 * 3600) == 4
    assert store.get_pregen("u1")["generated_at"] > before
    client.post("/events", json={"user_id": "u2", "item_id": "i1", "type": "click"})
    assert refresh_due(service, now=now + 5 * 3600) == 3  # u2 is active again: dropped, not refreshed


def test_a_pre_generated_slate_is_not_served_where_a_rule_blocks_its_items(build, open_service, store):
    config = build(inactive=INACTIVE)
    service = open_service(config)
    client = create_app(deps=service).test_client()
    client.post("/recommend", json={"user_id": "u3", "k": 5})
    refresh_due(service)
    cached = store.get_pregen("u3")["items"][:5]
    blocked = service.catalog.category(service.catalog.row_of[cached[0]["item_id"]])
    rule = {"context": "device", "value": "kids_tablet", "categories": [blocked]}
    strict = create_app(deps=open_service(config.replace(filters={"block": [rule]}))).test_client()
    kids = strict.post("/recommend", json={"user_id": "u3", "k": 5, "context": {"device": "kids_tablet"}}).get_json()
    catalog = service.catalog
    assert kids["strategy"] != "pregenerated"
    assert blocked not in {catalog.category(catalog.row_of[i["item_id"]]) for i in kids["items"]}
    assert strict.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()["strategy"] == "pregenerated"


def test_a_user_called_due_cannot_touch_the_refresh_schedule(build, open_service, store):
    service = open_service(build(inactive=INACTIVE))
    client = create_app(deps=service).test_client()
    for user in ("u1", "u2"):
        client.post("/recommend", json={"user_id": user, "k": 3})
    for user in ("due", "{due}", "pregen-due"):
        client.post("/events", json={"user_id": user, "item_id": "i1", "type": "view"})
    assert refresh_due(service) == 2


def test_a_pre_generated_slate_is_logged_with_the_strategy_that_drew_it(build, open_service, store):
    """Drawn by Thompson, served after the process switched to epsilon-greedy: its decision and
    the reward's importance weighting follow Thompson's, not the service's strategy now."""
    from bandit.strategies import STRATEGIES

    service = open_service(build(inactive=INACTIVE))
    client = create_app(deps=service).test_client()
    client.post("/recommend", json={"user_id": "u3", "k": 5})
    refresh_due(service)
    assert store.get_pregen("u3")["strategy_name"] == service.strategy.name == "thompson"
    service.strategy = STRATEGIES["epsilon_greedy"](service.config.exploration.settings["epsilon_greedy"])
    served = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
    assert served["strategy"] == "pregenerated"
    decision, _ = store.feedback_state(served["event_id"], served["items"][0]["item_id"])
    assert decision["strategy_name"] == "thompson"  # (what learning reads with the reward)
