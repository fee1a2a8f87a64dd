"""Filtering before scoring: seen items per event type, exclusions, context blocklists, and the
slate-level cap per category (with exact propensities)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from app import create_app
from bandit.strategies import EpsilonGreedy, EpsilonGreedyConfig, SlateRules


def _client(build, open_service, **sections):
    return create_app(deps=open_service(build(**sections))).test_client()


def _ids(body):
    return [i["item_id"] for i in body["items"]]


def test_purchased_items_are_not_recommended_again_but_clicked_ones_are(build, open_service):
    # the 15 nearest items alone (no popular or best-liked extras, whose ties a background load may
    # order either way), all that may be shown shown: what is left out is what the filter left out
    client = _client(build, open_service, retrieval={"n_candidates": 15, "fresh_candidates": 0,
                                                     "popular_candidates": 0, "quality_candidates": 0})
    shown = _ids(client.post("/recommend", json={"user_id": "u3", "k": 15}).get_json())
    bought, clicked = shown[0], shown[1]
    client.post("/events", json={"user_id": "u3", "item_id": bought, "type": "purchase"})
    client.post("/events", json={"user_id": "u3", "item_id": clicked, "type": "click"})
    for n in range(5):
        again = _ids(client.post("/recommend", json={"user_id": "u3", "k": 15, "event_id": f"f{n}"}).get_json())
        assert bought not in again and clicked in again


def test_context_blocklist_hides_categories(build, open_service):
    config = build(retrieval={"n_candidates": 100})

    def categories(client, context):
        catalog = client.application.extensions["banditrec"].catalog
        body = client.post("/recommend", json={"user_id": "u5", "k": 40, "context": context}).get_json()
        return Counter(catalog.category(catalog.row_of[i]) for i in _ids(body))

    plain = create_app(deps=open_service(config)).test_client()
    blocked = categories(plain, {"device": "kids_tablet"}).most_common(1)[0][0]
    rule = {"context": "device", "value": "kids_tablet", "categories": [blocked]}
    client = create_app(deps=open_service(config.replace(filters={"block": [rule]}))).test_client()
    assert blocked not in categories(client, {"device": "kids_tablet"})
    assert blocked in categories(client, {"device": "mobile"})


def test_at_most_n_items_per_category_in_a_slate(build, open_service):
    client = _client(build, open_service, retrieval={"n_candidates": 100}, filters={"max_per_category": 2})
    catalog = client.application.extensions["banditrec"].catalog
    for user in ("u1", "u2", "nobody"):
        body = client.post("/recommend", json={"user_id": user, "k": 10}).get_json()
        per_category = Counter(catalog.category(catalog.row_of[i]) for i in _ids(body))
        assert max(per_category.values()) <= 2
        if user == "nobody":  # popularity spans all 5 categories: the cap still leaves a full slate
            assert len(body["items"]) == 10


def test_the_category_cap_keeps_propensities_exact():
    """With a cap, each position's probabilities are over the candidates still allowed."""
    strategy = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.3))
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.05])
    groups = np.array([0, 0, 1, 1, 2])
    firsts, seconds = Counter(), Counter()
    rng = np.random.default_rng(5)
    for _ in range(20_000):
        slate = strategy.choose_slate(scores, 2, rng, rules=SlateRules(groups=groups, max_per_group=1))[0]
        assert len({groups[c.index] for c in slate}) == 2
        if slate[0].index == 0:  # given item 0 first, its group is closed: remaining {2, 3, 4}
            seconds[slate[1].index] += 1
            probs, _ = strategy.distribution(scores[[2, 3, 4]])
            assert slate[1].probability == probs[[2, 3, 4].index(slate[1].index)]
        firsts[slate[0].index] += 1
    total = sum(seconds.values())
    assert seconds[1] == 0  # same group as the first pick: never
    assert abs(seconds[2] / total - (0.7 + 0.1)) < 0.02  # exploit 1 - eps + eps/3


def test_an_item_bought_and_then_updated_stays_hidden_from_the_buyer(build, open_service):
    # The filter finds hidden items by their rows: an update moves the item to a new row (the
    # fresh buffer, here its only entry, so always a candidate), and that row is the one hidden.
    client = _client(build, open_service, retrieval={"n_candidates": 15, "fresh_candidates": 1,
                                                     "popular_candidates": 0, "quality_candidates": 0})
    catalog = client.application.extensions["banditrec"].catalog
    bought = _ids(client.post("/recommend", json={"user_id": "u3", "k": 16}).get_json())[0]
    client.post("/events", json={"user_id": "u3", "item_id": bought, "type": "purchase"})
    before = catalog.row_of[bought]
    assert client.put(f"/items/{bought}", json={"category": "books", "title": "a new edition"}).status_code == 200
    assert catalog.row_of[bought] != before
    for n in range(5):
        assert bought not in _ids(client.post("/recommend", json={"user_id": "u3", "k": 16, "event_id": f"b{n}"})
                                  .get_json())
    assert bought in _ids(client.post("/recommend", json={"user_id": "u4", "k": 16}).get_json())  # others see it
