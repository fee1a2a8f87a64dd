"""Onboarding preferences (`PUT /users/{id}` `preferences`): a user without history who said what
they like is served personally from the first request — candidates near the liked items, the
liked categories as tastes — never shown the items they named, and their own events take over
(real Redis, through the app)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from app import create_app
from serving.records import Preferences
from serving.userstate import preference_vector

BAD_PREFERENCES = [
    ("jazz", "preferences body must be a JSON object"),
    ({"liked": ["i1"]}, "unknown field(s) liked"),
    ({"liked_items": "i1"}, "preferences.liked_items must be a list of at most 200"),
    ({"liked_items": False}, "preferences.liked_items must be a list of at most 200"),
    ({"liked_items": [f"i{n}" for n in range(201)]}, "preferences.liked_items must be a list of at most 200"),
    ({"disliked_items": [""]}, "each of preferences.disliked_items must be a non-empty string"),
    ({"liked_categories": [7]}, "each of preferences.liked_categories must be a category name"),
]


@pytest.fixture
def client(build, open_service):
    return create_app(deps=open_service(build())).test_client()


def _service(client):
    return client.application.extensions["banditrec"]


def _category_items(service, category: str, n: int) -> list[str]:
    catalog = service.catalog
    rows = [r for r in range(len(catalog.ids)) if catalog.category(r) == category]
    return [catalog.ids[r] for r in rows[:n]]


def _shared(service, event_id: str) -> str:
    stored, _ = service.store.feedback_state(event_id, "")
    return stored["shared"]


def test_a_new_user_with_preferences_is_served_personally_from_the_first_request(client):
    service = _service(client)
    catalog = service.catalog
    category = Counter(catalog.category(r) for r in range(len(catalog.ids))).most_common(3)[-1][0]
    liked = _category_items(service, category, 3)
    answer = client.put("/users/newbie", json={"age_group": "25-34", "preferences": {
        "liked_categories": [category], "liked_items": liked, "disliked_items": ["i1"]}})
    assert answer.status_code == 200, answer.get_json()
    said = answer.get_json()["preferences"]
    assert said["liked_items"] == liked and said["personal"] is True and said["known_items"] == 4

    with_prefs = client.post("/recommend", json={"user_id": "newbie", "k": 10}).get_json()
    without = client.post("/recommend", json={"user_id": "stranger", "k": 10}).get_json()
    assert with_prefs["strategy"] == "personalized" and without["strategy"] == "cold_start"
    shown = {i["item_id"] for i in with_prefs["items"]}
    assert not shown & {*liked, "i1"}  # the items they named are known to them
    assert f"taste={category}" in _shared(service, with_prefs["event_id"])
    start = service.store.user_state("newbie")["vectors"][catalog.space]
    assert np.allclose(start, preference_vector(Preferences((category,), tuple(liked), ("i1",)), catalog), atol=1e-6)


def test_without_a_vector_in_this_space_the_preferences_give_one_at_request_time(client):
    """After a full build into a new embedding space, a user without history has no vector
    there: the request computes it from the stored preferences."""
    service = _service(client)
    liked = _category_items(service, service.catalog.category(0), 3)
    client.put("/users/newbie2", json={"preferences": {"liked_items": liked}})
    service.store.client.hdel(service.store._ukey("user", "newbie2"), f"vec:{service.catalog.space}")
    assert service.catalog.space not in service.store.user_state("newbie2")["vectors"]
    answer = client.post("/recommend", json={"user_id": "newbie2", "k": 5}).get_json()
    assert answer["strategy"] == "personalized"


def test_events_take_over_and_a_profile_without_preferences_drops_them(client):
    service = _service(client)
    catalog = service.catalog
    first, other = catalog.category(0), next(c for c in catalog.category_names if c != catalog.category(0))
    client.put("/users/newbie3", json={"preferences": {"liked_items": _category_items(service, first, 3)}})
    start = service.store.user_state("newbie3")["vectors"][catalog.space]
    clicked = _category_items(service, other, 5)
    for item_id in clicked:
        event = {"user_id": "newbie3", "item_id": item_id, "type": "click"}
        assert client.post("/events", json=event).status_code == 200
    moved = service.store.user_state("newbie3")["vectors"][catalog.space]
    toward = catalog.vectors(catalog.rows_for(clicked)).mean(axis=0)
    assert float(moved @ toward) > float(start @ toward)  # the user's own events move it on
    client.put("/users/newbie4", json={"preferences": {"liked_categories": [first]}})
    assert client.post("/recommend", json={"user_id": "newbie4"}).get_json()["strategy"] == "personalized"
    client.put("/users/newbie4", json={"age_group": "18-24"})  # PUT replaces: no preferences any more
    state = service.store.user_state("newbie4")
    assert "preferences" not in state and state["profile"] == {"age_group": "18-24"}


def test_preferences_with_nothing_known_leave_the_user_in_cold_start(client):
    answer = client.put("/users/newbie5", json={"preferences": {"liked_items": ["no-such-item"],
                                                                "liked_categories": ["no-such-category"]}})
    assert answer.status_code == 200 and answer.get_json()["preferences"]["personal"] is False
    assert client.post("/recommend", json={"user_id": "newbie5"}).get_json()["strategy"] == "cold_start"


@pytest.mark.parametrize("preferences,message", BAD_PREFERENCES)
def test_bad_preferences_are_400(client, preferences, message):
    response = client.put("/users/u1", json={"preferences": preferences})
    assert response.status_code == 400 and message in response.get_json()["error"]["message"], response.get_json()
