"""Real-time signals and cold start (README, "How it works") on a real Redis, through the app."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from app import create_app
from serving import candidates
from serving.records import UserState
from serving.userstate import session_vector

BAD_EVENTS = [
    ({"item_id": "i1", "type": "click"}, "user_id must be a non-empty string, got None"),
    ({"user_id": "u1", "type": "click"}, "item_id must be a non-empty string, got None"),
    ({"user_id": "u1", "item_id": "i1", "type": "like"},
     "type must be one of view, click, add_to_cart, purchase, got 'like'"),
    ({"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": "now"},
     "timestamp must be unix seconds (0 <= t < 1e11), got 'now'"),
    ({"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": 9e10}, "s in the future"),
    ({"user_id": "u1", "item_id": "i1", "type": "view", "value": "12s"},
     "value must be a number between 0 and 1e9 (a price, a dwell time), got '12s'"),
    ({"user_id": "u1", "item_id": "i1", "type": "purchase", "value": -3},
     "value must be a number between 0 and 1e9 (a price, a dwell time), got -3"),
    ({"user_id": "u1", "item_id": "i1", "type": "view", "extra": 1}, "unknown field(s) extra"),
]


@pytest.fixture
def client(build, open_service):
    return create_app(deps=open_service(build(retrieval={"n_candidates": 60}))).test_client()


def _service(client):
    return client.application.extensions["banditrec"]


def _categories(client, items):
    catalog = _service(client).catalog
    return [catalog.category(catalog.row_of[i["item_id"]]) for i in items]


@pytest.mark.parametrize("body,message", BAD_EVENTS)
def test_bad_events_are_400(client, body, message):
    response = client.post("/events", json=body)
    assert response.status_code == 400 and message in response.get_json()["error"]["message"]


def test_an_event_updates_the_users_real_time_state(client, store):
    service = _service(client)
    before = store.user_state("u3")
    assert client.post("/events", json={"user_id": "u3", "item_id": "i10", "type": "click"}).get_json() == \
        {"status": "recorded", "item_known": True}
    after = store.user_state("u3")
    space = service.catalog.space
    assert after["n"] == before["n"] + 1 and after["last"] > before["last"]
    assert after["recent"][0]["i"] == "i10" and after["recent"][0]["c"] == service.catalog.category(
        service.catalog.row_of["i10"])
    session = session_vector(UserState.from_json(after), service.catalog, time.time(), service.config.realtime,
                             service.config.embedding.event_weights)
    assert np.allclose(session, service.catalog.vector(service.catalog.row_of["i10"]), atol=1e-5)
    moved = float(after["vectors"][space] @ service.catalog.vector(service.catalog.row_of["i10"]))
    assert moved > float(before["vectors"][space] @ service.catalog.vector(service.catalog.row_of["i10"]))
    assert "i10" in store.top_trending(5) and not after["seen"]  # a click does not consume
    [(_, event)] = store.read_events()
    assert event["user_id"] == "u3" and event["type"] == "click"
    unknown = client.post("/events", json={"user_id": "u3", "item_id": "not-in-catalog", "type": "view"})
    assert unknown.get_json() == {"status": "recorded", "item_known": False}
    assert store.user_state("u3")["n"] == before["n"] + 2


def test_a_burst_in_one_category_shifts_the_next_recommendations(build, open_service, small_world):
    """With `model.session_prior` (the weight a new model gives `Live`, the similarity to the
    live session) a burst of clicks moves the next slate towards its category before any
    reward is learned. Off by default: on real ratings it cost clicks (the model learns the
    weight from rewards instead)."""
    client = create_app(deps=open_service(build(model={"session_prior": 0.1}))).test_client()
    categories = sorted({i["category"] for i in small_world.items})  # sorted: ties break the same way every run
    shifts = []
    for user in ("u3", "u4", "u5", "u8", "u11", "u20"):
        before = client.post("/recommend", json={"user_id": user, "k": 20, "event_id": f"shift-{user}-0"}).get_json()
        shown = Counter(_categories(client, before["items"]))
        target = min(categories, key=lambda c: shown.get(c, 0))  # a category the user was not shown
        burst = [i["item_id"] for i in small_world.items if i["category"] == target and i["in_stock"]][:6]
        for item_id in burst:
            assert client.post("/events",
                               json={"user_id": user, "item_id": item_id, "type": "click"}).status_code == 200
        after = client.post("/recommend", json={"user_id": user, "k": 20, "event_id": f"shift-{user}-1"}).get_json()
        shifts.append(Counter(_categories(client, after["items"]))[target] / 20 - shown.get(target, 0) / 20)
    # measured: 0.25, 0.25, 0.25, 0.30, 0.25, 0.25 of the slate moved to the burst's category (0.05 each
    # at session_prior 0.05, 0.75 at 0.2; before the burst the category had ~0 of it)
    assert np.mean(shifts) >= 0.15 and sum(s >= 0.1 for s in shifts) >= 4, shifts


def test_cold_start_switches_to_personal_exactly_at_the_nth_interaction(client, small_world):
    assert client.put("/users/newbie", json={"age_group": "25-34", "location": "DE"}).status_code == 200
    strategies = []
    for n in range(6):
        strategies.append(client.post("/recommend", json={"user_id": "newbie", "k": 5}).get_json()["strategy"])
        client.post("/events", json={"user_id": "newbie", "item_id": f"i{n * 7}", "type": "view"})
    assert strategies == ["cold_start"] * 5 + ["personalized"]  # min_interactions = 5


def test_a_stranger_without_profile_gets_global_popularity(client, store):
    body = client.post("/recommend", json={"user_id": "never-seen", "k": 5, "context": {"device": "tv"}})
    assert body.status_code == 200 and body.get_json()["strategy"] == "cold_start"
    popular = {item_id for item_id, _ in store.top_popular(60)}
    assert {i["item_id"] for i in body.get_json()["items"]} & popular


def _assert_segments_lead_then_slates(client, small_world, store, tag):
    segments = Counter((u["age_group"], u["location"]) for u in small_world.users).most_common(2)
    slates = []
    for n, ((age, location), _) in enumerate(segments):
        user = f"cold-{tag}-{n}"
        client.put(f"/users/{user}", json={"age_group": age, "location": location})
        body = client.post("/recommend", json={"user_id": user, "k": 10, "event_id": f"seg-{tag}-{n}"}).get_json()
        assert body["strategy"] == "cold_start"
        slates.append({i["item_id"] for i in body["items"]})
        segment_top = [i for i, _ in store.top_popular(3, scope=f"seg:age_group={age}|location={location}")]
        service = _service(client)
        rows = candidates.popular(service.catalog, service.popular, {"age_group": age, "location": location},
                                  service.config)
        leading = {service.catalog.ids[r] for r in rows[:10]}
        assert set(segment_top) & leading, "the segment's most popular items lead the candidates"
    return slates


def test_segment_popularity_leads_cold_start_candidates(client, small_world, store):
    # defaults mix in global and trending items
    _assert_segments_lead_then_slates(client, small_world, store, "default")


def test_demographic_segments_get_different_popular_items(build, open_service, small_world, store):
    config = build(retrieval={"n_candidates": 60},
                   cold_start={"segment_share": 1.0, "global_share": 0.0, "trending_share": 0.0})
    client = create_app(deps=open_service(config)).test_client()
    first, second = _assert_segments_lead_then_slates(client, small_world, store, "only")
    # measured: 0 items in common
    assert len(first & second) <= 4, (first, second)


def test_put_user_validates_and_replaces_the_profile(client, store):
    bad = client.put("/users/u9", json={"age_group": 30})
    assert bad.status_code == 400 and bad.get_json()["error"]["message"] == \
        "age_group must be a string of <= 64 characters, got 30"
    assert client.put("/users/u9", json={"hobby": "x"}).status_code == 400
    assert client.put("/users/u9", json={"location": "FR"}).get_json() == {"user_id": "u9",
                                                                            "profile": {"location": "FR"}}
    assert store.user_state("u9")["profile"] == {"location": "FR"}


def test_concurrent_events_of_one_user_are_all_applied(client, store):
    service = _service(client)
    catalog = service.catalog
    before = store.user_state("u8")["vectors"][catalog.space].copy()
    items = [f"i{n}" for n in range(100, 116)]
    threads = [threading.Thread(target=client.application.test_client().post, args=("/events",),
                                kwargs={"json": {"user_id": "u8", "item_id": item, "type": "click"}}) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung (a deadlock?)"
    after = store.user_state("u8")
    assert after["n"] == store.user_state("u8")["n"] and {e["i"] for e in after["recent"]} >= set(items)
    # the long-term vector took all 16 steps: as far from where it was as 16 steps in a row take it
    sequential = before.astype(np.float64)
    step = service.config.realtime.ema_alpha * 0.5  # a click weighs 3 of the maximum 6
    for item in items:
        sequential = (1 - step) * sequential / np.linalg.norm(sequential) + step * catalog.vector(catalog.row_of[item])
    sequential /= np.linalg.norm(sequential)
    moved, expected = np.linalg.norm(after["vectors"][catalog.space] - before), np.linalg.norm(sequential - before)
    assert moved > 0.9 * expected, (moved, expected)


def test_a_late_event_does_not_make_an_active_user_look_inactive(build, open_service, store):
    config = build(inactive={"after_s": 30 * 86400.0})
    client = create_app(deps=open_service(config)).test_client()
    for item in ("i1", "i2"):
        client.post("/events", json={"user_id": "u9", "item_id": item, "type": "click"})
    last = store.user_state("u9")["last"]
    client.post("/events", json={"user_id": "u9", "item_id": "i3", "type": "view",
                                 "timestamp": time.time() - 40 * 86400})  # a backfilled event
    assert store.user_state("u9")["last"] == last
    for _ in range(3):
        assert client.post("/recommend", json={"user_id": "u9", "k": 3}).get_json()["strategy"] == "personalized"


def test_events_count_toward_long_term_popularity_and_the_pop_feature(build, open_service, store):
    """Items and clicks sent through the API make an item popular: its `Pop` feature rises
    (the most engaged item gets 1.0), and a new model that has learned no reward yet ranks by
    it (the popularity prior), so a popularity list is where it starts."""
    service = open_service(build(model={"warm_start": False}))
    client = create_app(deps=service).test_client()
    before = dict(store.top_popular(1000))
    rows = np.arange(len(service.catalog.ids))
    hit, other = [service.catalog.ids[r] for r in rows[service.catalog.available(rows)]
                  if service.catalog.ids[r] not in before][:2]  # in stock, never engaged with
    assert client.post("/events", json={"user_id": "fan", "item_id": other, "type": "view"}).status_code == 200
    for n in range(40):
        assert client.post("/events", json={"user_id": f"fan{n}", "item_id": hit, "type": "click"}).status_code == 200
    after = dict(store.top_popular(1000))
    assert after[hit] == pytest.approx(40 * 3.0) and after[other] == pytest.approx(1.0)  # click weight 3, view 1
    service.popular.clear()
    values = service.popular.feature([hit, other, "no-such-item"])
    assert values[0] == 1.0 and 0.0 < values[1] < 1.0 and values[2] == 0.0
    body = client.post("/recommend", json={"user_id": "someone-new", "k": 3}).get_json()
    assert body["strategy"] == "cold_start"
    assert body["items"][0]["item_id"] == hit or body["items"][0]["explored"], body


def test_the_popularity_feature_by_catalog_row_is_the_one_by_item_id(build, open_service):
    """The request path reads popularity by catalog row (a search among the top items' rows):
    the same values as by id, for every row, also after a popular item moved to a new row and
    once the signals are read again."""
    service = open_service(build())
    client = create_app(deps=service).test_client()
    catalog, popular = service.catalog, service.popular

    def same_for_every_row():  # that may be shown (a row an item left is never a candidate again)
        rows = np.arange(len(catalog.ids))
        rows = rows[catalog.available(rows)]
        by_row = popular.feature(None, rows, catalog)
        assert np.array_equal(by_row, popular.feature(catalog.ids.take(rows)))
        return dict(zip(rows.tolist(), by_row.tolist()))

    values = same_for_every_row()
    assert sum(v > 0 for v in values.values()) > 10 and max(values.values()) == 1.0
    top = catalog.ids[max(values, key=values.get)]
    assert client.put(f"/items/{top}", json={"category": "books", "title": "moved"}).status_code == 200
    moved = same_for_every_row()  # its new row was added after the rows were looked up: found by id
    assert moved[catalog.row_of[top]] == 1.0
    popular.clear()
    same_for_every_row()


def test_events_count_toward_quality_and_the_q_feature(build, open_service, store):
    """An item clicked by most of those who met it gets a higher `Q` than one met as often and
    only viewed, a count of 2 of 2 is shrunk towards the catalog's share, and the feature is
    in the action lines the model scores and learns."""
    service = open_service(build(model={"warm_start": False}))
    client = create_app(deps=service).test_client()
    counts = {item_id: (n, e) for item_id, n, e in store.quality_counts(100_000)}
    rows = np.arange(len(service.catalog.ids))
    fresh = [service.catalog.ids[r] for r in rows[service.catalog.available(rows)]
             if service.catalog.ids[r] not in counts]
    liked, ignored, lucky = fresh[:3]
    for n in range(30):
        for item_id, kind in ((liked, "click" if n % 10 else "view"), (ignored, "view")):
            assert client.post("/events",
                               json={"user_id": f"q{n}", "item_id": item_id, "type": kind}).status_code == 200
    for n in range(2):
        client.post("/events", json={"user_id": f"q{n}", "item_id": lucky, "type": "click"})
    counts = {item_id: (n, e) for item_id, n, e in store.quality_counts(100_000)}
    assert counts[liked] == (30, 27) and counts[ignored] == (30, 0) and counts[lucky] == (2, 2)
    service.popular.clear()
    q = dict(zip([liked, ignored, lucky, "no-such-item"],
                 service.popular.quality([liked, ignored, lucky, "no-such-item"])))
    share = q["no-such-item"]
    assert 0.0 < share < 1.0
    assert q[ignored] < share < q[lucky] < q[liked] < 27 / 30, q
    body = client.post("/recommend", json={"user_id": "u3", "k": 5}).get_json()
    decision = store.feedback_state(body["event_id"], "")[0]
    assert all(" |Q q:" in action for _, _, action in decision["items"].values())


def test_what_the_service_shows_moves_quality_by_its_reward_rate(build, open_service, store):
    """Clicks arrive as events, unclicked impressions do not: from event counts alone whatever
    is shown looks ever better. Each item the service shows is counted at once (exposure
    weighted by its position's reward rate), each first click at once too (not when the
    decision is learned, a minute later), and `Q` pools them with the item's events: shown and
    never clicked falls below its event quality."""
    from serving.popular import PopularCache

    service = open_service(build(model={"warm_start": False}, feedback={"reward_wait_s": 3600.0, "aggregation": "max"}))
    client = create_app(deps=service).test_client()
    shown = Counter()
    clicked = set()
    for n in range(12):
        body = client.post("/recommend", json={"user_id": f"u{n % 4}", "k": 4}).get_json()
        items = [it["item_id"] for it in body["items"]]
        shown.update(items)
        clicked.add(items[1])  # the second position is always clicked, the others never
        assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": items[1], "reward": 1.0,
                                              "seen": items}).status_code == 200
    impressions, rewards = store.position_counts()  # nothing was learned yet: counted as it happened
    assert service.learner.total == 0
    assert impressions == {1: 12.0, 2: 12.0, 3: 12.0, 4: 12.0} and rewards == {2: 12.0}
    ids = sorted(shown)
    live = {item_id: (e, r) for item_id, e, r in store.live_counts(1000)}
    assert set(live) == set(ids)
    exposure, got = [live[i][0] for i in ids], [live[i][1] for i in ids]
    assert all(e > 0 for e in exposure)
    assert {i for i, r in zip(ids, got) if r > 0} == clicked
    events_only = PopularCache(store, live_weight=0.0).quality(ids)
    service.popular.clear()
    pooled = service.popular.quality(ids)
    for item_id, before, after in zip(ids, events_only, pooled):  # never clicked: below its event quality
        assert item_id in clicked or after < before, (item_id, before, after)
    # pooled, Q moves towards the item's live rate put on the events' scale (the catalog's share
    # at the mean live rate): up where that is above its event quality, down where below
    share = service.popular._signals().share
    exposure, got = np.asarray(exposure), np.asarray(got)
    scaled = got / exposure * (exposure.sum() / got.sum()) * share
    for item_id, before, after, target in zip(ids, events_only, pooled, scaled):
        assert (after > before) == (target > before), (item_id, before, after, target)
    assert any(after > before for after, before in zip(pooled, events_only))


@pytest.mark.parametrize("on", [False, True])
def test_the_user_id_feature_is_in_the_shared_line_only_when_configured(build, open_service, store, on):
    service = open_service(build(model={"user_id_feature": on}))
    client = create_app(deps=service).test_client()
    body = client.post("/recommend", json={"user_id": "u3", "k": 3}).get_json()
    decision = store.feedback_state(body["event_id"], "")[0]
    assert ("|User" in decision["shared"]) and ((" id=u3" in decision["shared"]) == on), decision["shared"]


def test_a_low_rank_cross_is_learned_saved_and_restored(build, open_service, store):
    """`model.lrq`: the model is built with VW's --lrq, learns rewards, and a snapshot of it
    scores the same after a restart."""
    from serving.rewards import close_due

    config = build(model={"lrq": ["UI2"], "user_id_feature": True}, feedback={"reward_wait_s": 1.0})
    service = open_service(config)
    assert "--lrq UI2" in service.learner.model.args
    client = create_app(deps=service).test_client()
    for n in range(6):
        body = client.post("/recommend", json={"user_id": f"u{n}", "k": 3}).get_json()
        first = body["items"][0]["item_id"]
        client.post("/feedback", json={"event_id": body["event_id"], "item_id": first, "reward": 1.0,
                                       "seen": [it["item_id"] for it in body["items"]]})
    close_due(service, now=time.time() + 3600)
    assert service.learner.total >= 6
    version = service.learner.snapshot(config.snapshot.keep)
    again = open_service(config)
    assert again.learner.version == version
    shared, actions = "shared |User id=u1 age=25-34", ["|Item id=i1 cat=a", "|Item id=i2 cat=b"]
    assert np.allclose(again.learner.model.predict(shared, actions), service.learner.model.predict(shared, actions))


def test_a_recommended_click_sent_to_feedback_and_events_counts_in_quality_once(build, open_service, store):
    """The service's own click is a live reward of the slate; the same click sent to `/events`
    (as clients do, for the user's history) is attributed to it, not counted again as an
    event, in either order. A click the service did not show is an event as before."""
    service = open_service(build(model={"warm_start": False}))
    client = create_app(deps=service).test_client()
    before = {item_id: (n, e) for item_id, n, e in store.quality_counts(100_000)}
    body = client.post("/recommend", json={"user_id": "u3", "k": 3}).get_json()
    first, second, _ = [item["item_id"] for item in body["items"]]
    click = {"user_id": "u3", "type": "click"}
    reward = {"event_id": body["event_id"], "reward": 1.0}
    assert client.post("/feedback", json={**reward, "item_id": first}).status_code == 200
    assert client.post("/events", json={**click, "item_id": first}).status_code == 200
    assert client.post("/events", json={**click, "item_id": second}).status_code == 200
    assert client.post("/feedback", json={**reward, "item_id": second}).status_code == 200
    assert client.post("/events", json={"user_id": "other", "item_id": first, "type": "click"}).status_code == 200
    after = {item_id: (n, e) for item_id, n, e in store.quality_counts(100_000)}
    n, e = before.get(first, (0.0, 0.0))
    assert after[first] == (n + 1, e + 1)  # the other user's click only
    assert after.get(second, (0.0, 0.0)) == before.get(second, (0.0, 0.0))
    live = dict((i, r) for i, _, r in store.live_counts(100))
    assert live[first] == live[second] == 1.0


def test_what_the_service_shows_moves_q_at_once_not_when_the_cached_signals_expire(build, open_service, store):
    """The live scale (rewards per impression → events' scale) comes from totals read with the
    candidates' counts: the first impressions and clicks count before the 30 s cache expires."""
    service = open_service(build(model={"warm_start": False}))
    ignored, liked = [item_id for item_id, _, _ in store.quality_counts(2)]
    before = service.popular.quality([ignored, liked])  # caches the signals: nothing shown yet
    for n in range(50):
        store.count_shown([(ignored, 1, 1.0), (liked, 2, 1.0)])
        if n % 2:
            store.count_engaged(liked, 2)
    after = service.popular.quality([ignored, liked])
    assert after[0] < before[0] and after[1] > before[1], (before, after)
