"""The HTTP contract (README, "The HTTP API"; `GET /openapi.json`) on a real Redis: shapes, errors,
propensities, items."""

from __future__ import annotations

import json

import pytest
from conftest import make_config

from app import create_app

BAD_RECOMMEND = [
    ([], 400, "recommend body must be a JSON object, got list"),
    ({}, 400, "user_id must be a non-empty string, got None"),
    ({"user_id": 5}, 400, "user_id must be a non-empty string, got 5"),
    ({"user_id": ""}, 400, "user_id must be a non-empty string, got ''"),
    ({"user_id": "x" * 10_000}, 400, "user_id has 10000 characters, must have <= 256"),
    ({"user_id": "a\nb"}, 400, "user_id must be printable text without control characters"),
    ({"user_id": "u1", "k": 0}, 400, "k == 0, must be >= 1"),
    ({"user_id": "u1", "k": -3}, 400, "k == -3, must be >= 1"),
    ({"user_id": "u1", "k": 101}, 400, "k == 101, must be <= 100"),
    ({"user_id": "u1", "k": 10 ** 30}, 400,
     "body contains the integer 10000000000000000000..., which is out of range (|n| < 10**15)"),
    ({"user_id": "u1", "k": "3"}, 400, "k must be an integer, got '3'"),
    ({"user_id": "u1", "k": 2.5}, 400, "k must be an integer, got 2.5"),
    ({"user_id": "u1", "k": True}, 400, "k must be an integer, got True"),
    ({"user_id": "u1", "context": "x"}, 400, "context must be an object, got 'x'"),
    ({"user_id": "u1", "context": {"a": {"b": 1}}}, 400,
     "context.a must be a string, number, boolean or null, got {'b': 1}"),
    ({"user_id": "u1", "context": {"a": [1]}}, 400, "context.a must be a string, number, boolean or null, got [1]"),
    ({"user_id": "u1", "context": {"": 1}}, 400, "context key '' must have 1-64 characters"),
    ({"user_id": "u1", "context": {f"k{i}": i for i in range(65)}}, 400, "context has 65 keys, must have <= 64"),
    ({"user_id": "u1", "exclude": "i1"}, 400, "exclude must be a list of item ids, got 'i1'"),
    ({"user_id": "u1", "exclude": [1]}, 400, "each exclude entry must be a non-empty string, got 1"),
    ({"user_id": "u1", "event_id": "bad id!"}, 400,
     "event_id must be 1-128 characters of [A-Za-z0-9_.-], got 'bad id!'"),
    ({"user_id": "u1", "event_id": 7}, 400, "event_id must be 1-128 characters of [A-Za-z0-9_.-], got 7"),
    ({"user_id": "u1", "foo": 1}, 400,
     "unknown field(s) foo; known: baseline, context, event_id, exclude, explain, k, test, user_id"),
]

BAD_FEEDBACK = [
    ("x", 400, "feedback body must be a JSON object, got str"),
    ({"item_id": "i1", "reward": 1}, 400, "event_id must be 1-128 characters of [A-Za-z0-9_.-], got None"),
    ({"event_id": "e1", "reward": 1}, 400, "item_id must be a non-empty string, got None"),
    ({"event_id": "e1", "item_id": "i1"}, 400, "reward must be a number, got None"),
    ({"event_id": "e1", "item_id": "i1", "reward": "1"}, 400, "reward must be a number, got '1'"),
    ({"event_id": "e1", "item_id": "i1", "reward": True}, 400, "reward must be a number, got True"),
    ({"event_id": "e1", "item_id": "i1", "reward": 11}, 400, "reward == 11.0, must be between -1.0 and 10.0"),
    ({"event_id": "e1", "item_id": "i1", "reward": -2}, 400, "reward == -2.0, must be between -1.0 and 10.0"),
    ({"event_id": "never-issued", "item_id": "i1", "reward": 1}, 404,
     "event_id 'never-issued' is unknown (never issued, or expired more than 86400 s ago)"),
]

BAD_ITEM = [
    ([], 400, "an item must be a JSON object, got list"),
    ({"in_stock": "yes"}, 400, "in_stock must be true or false, got 'yes'"),
    ({"published_at": -5}, 400, "published_at must be unix seconds (0 <= t < 1e11), got -5"),
    ({"category": 3}, 400, "category must be a string, got 3"),
    ({"attributes": []}, 400, "attributes must be an object, got []"),
    ({"attributes": {"a": {"b": 1}}}, 400, "attributes.a must be a string, number or boolean, got {'b': 1}"),
    ({"item_id": "other"}, 400, "item_id in the body ('other') differs from the path ('new-1')"),
    ({"colour": "red"}, 400, "unknown item field(s) colour; known: attributes, category, description, in_stock, "
                             "item_id, published_at, title"),
]


def _error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


@pytest.mark.parametrize("body,status,message", BAD_RECOMMEND)
def test_recommend_rejects_bad_input(app_client, body, status, message):
    assert _error(app_client.post("/recommend", json=body), status)["message"] == message


@pytest.mark.parametrize("body,status,message", BAD_FEEDBACK)
def test_feedback_rejects_bad_input(app_client, body, status, message):
    assert _error(app_client.post("/feedback", json=body), status)["message"] == message


@pytest.mark.parametrize("body,status,message", BAD_ITEM)
def test_put_item_rejects_bad_input(app_client, body, status, message):
    assert _error(app_client.put("/items/new-1", json=body), status)["message"] == message


@pytest.mark.parametrize("raw,message", [
    ("{", "body is not valid JSON"),
    ('{"user_id": "u1", "k": NaN}', "body contains NaN, which is not valid JSON (numbers must be finite)"),
    ('{"user_id": "u1", "context": {"x": Infinity}}', "body contains Infinity"),
    ('{"user_id": "u1", "context": {"x": 1e999}}', "context.x == inf, must be finite"),
    ("[" * 100_000 + "]" * 100_000, "body is not valid JSON"),
    ('{"user_id": "u1", "context": {"a": "\\ud800"}}', "body contains an unpaired UTF-16 surrogate escape"),
    ('{"\\udfff": 1}', "body contains an unpaired UTF-16 surrogate escape"),
    ('{"user_id": "u1", "k": -1' + "0" * 400 + "}", "body contains the integer -1000000000000000000"),
    (b'{"user_id": "\xff"}', "body is not valid JSON"),
])
def test_malformed_json_is_a_clear_400(app_client, raw, message):
    response = app_client.post("/recommend", data=raw, content_type="application/json")
    assert _error(response, 400)["message"].startswith(message)


@pytest.mark.parametrize("path,method,raw", [
    ("/feedback", "POST", '{"event_id": "e", "item_id": "i", "reward": 1' + "0" * 400 + "}"),
    ("/feedback", "POST", '{"event_id": "e", "item_id": "i", "reward": 1e400}'),
    ("/items/x", "PUT", '{"published_at": 1' + "0" * 400 + "}"),
    ("/items/x", "PUT", '{"attributes": {"n": 1' + "0" * 400 + "}}"),
    ("/items/x", "PUT", '{"title": "\\udc00"}'),
    ("/items/x", "PUT", '{"attributes": {"\\ud800": 1}}'),
])
def test_hostile_numbers_and_text_are_400_not_500(app_client, path, method, raw):
    assert _error(app_client.open(path, method=method, data=raw, content_type="application/json"), 400)


def test_unicode_and_awkward_ids_work(app_client):
    for item_id in ("sku 1", "sku_1", "sku|1", "a{b}:c", "é€😀", "x" * 256):
        assert app_client.put(f"/items/{item_id}", json={"category": "odd"}).status_code == 200
    body = app_client.post("/recommend", json={"user_id": "ü{ser}|:1", "k": 3, "context": {"k|ey": "v a:l"}})
    assert body.status_code == 200
    service = app_client.application.extensions["banditrec"]
    lines = {service.catalog.lines[service.catalog.row_of[i]] for i in ("sku 1", "sku_1", "sku|1")}
    assert len(lines) == 3  # ids that sanitise alike still get their own weights


def test_framework_errors_are_json(app_client):
    assert _error(app_client.get("/nope"), 404) == {"code": "not_found", "message": "no route GET /nope"}
    response = app_client.get("/recommend")
    assert _error(response, 405)["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    assert _error(app_client.post("/recommend", data="user_id=u1"), 415)["code"] == "unsupported_media_type"
    big = json.dumps({"user_id": "u1", "context": {"blob": "x" * 2_000_000}})
    assert _error(app_client.post("/recommend", data=big, content_type="application/json"), 413)["code"] \
        == "payload_too_large"


def test_recommend_contract(app_client, store):
    response = app_client.post("/recommend", json={"user_id": "u3", "context": {"device": "mobile", "hour": 21},
                                                   "k": 5})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"event_id", "model_version", "arm", "strategy", "items"}
    assert body["strategy"] == "personalized" and body["arm"] == "personalized"
    assert [i["position"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert len({i["item_id"] for i in body["items"]}) == 5
    for item in body["items"]:
        assert set(item) == {"item_id", "position", "score", "probability", "explored", "fresh"}
        assert 0.0 < item["probability"] <= 1.0
        assert isinstance(item["explored"], bool) and isinstance(item["fresh"], bool)
    # the logged propensity is the returned one, for every position
    decision, _ = store.feedback_state(body["event_id"], body["items"][0]["item_id"])
    for item in body["items"]:
        position, probability, action = decision["items"][item["item_id"]]
        assert (position, probability) == (item["position"], item["probability"])
        assert action.startswith("|Item ")


def test_unknown_user_is_served_cold_start(app_client):
    body = app_client.post("/recommend", json={"user_id": "someone-new", "k": 3}).get_json()
    assert body["strategy"] == "cold_start" and len(body["items"]) == 3


def test_exclude_and_out_of_stock_are_never_returned(app_client, small_world):
    out_of_stock = {i["item_id"] for i in small_world.items if not i["in_stock"]}
    assert out_of_stock
    exclude = [f"i{n}" for n in range(0, 400, 2)]
    for user in range(20):
        body = app_client.post("/recommend", json={"user_id": f"u{user}", "k": 50, "exclude": exclude}).get_json()
        returned = {i["item_id"] for i in body["items"]}
        assert returned and not returned & set(exclude) and not returned & out_of_stock


def test_client_event_id_is_used_once(app_client):
    first = app_client.post("/recommend", json={"user_id": "u1", "event_id": "client-42"})
    assert first.status_code == 200 and first.get_json()["event_id"] == "client-42"
    again = app_client.post("/recommend", json={"user_id": "u1", "event_id": "client-42"})
    assert _error(again, 409)["message"] == "event_id 'client-42' was already used for another decision"


def test_feedback_is_recorded_once_and_learned_once(app_client, store):
    service = app_client.application.extensions["banditrec"]
    body = app_client.post("/recommend", json={"user_id": "u5", "k": 3}).get_json()
    item = body["items"][1]["item_id"]
    reward = {"event_id": body["event_id"], "item_id": item, "reward": 1.0}
    assert app_client.post("/feedback", json=reward).get_json() == {"status": "accepted", "duplicate": False}
    assert app_client.post("/feedback", json=reward).get_json() == {"status": "accepted", "duplicate": True}
    assert store.reward_count() == 1 and service.learner.learned == 1
    [(_, entry)] = store.read_rewards()
    assert entry["p"] == body["items"][1]["probability"] and entry["position"] == 2
    # an item that was not shown is refused, and nothing is recorded
    missing = {"event_id": body["event_id"], "item_id": "i-not-shown", "reward": 1.0}
    assert _error(app_client.post("/feedback", json=missing), 400)["message"] == \
        f"item_id 'i-not-shown' was not in the slate of event '{body['event_id']}'"
    assert store.reward_count() == 1


def test_reward_raises_the_rewarded_items_score(app_client):
    service = app_client.application.extensions["banditrec"]
    request = {"user_id": "u7", "k": 10, "context": {"device": "desktop"}}
    first = app_client.post("/recommend", json={**request, "event_id": "warm-0"}).get_json()
    target = [i for i in first["items"] if not i["explored"]][-1]  # shown again unless explored away
    for n in range(30):
        body = app_client.post("/recommend", json={**request, "event_id": f"warm-{n + 1}"}).get_json()
        if target["item_id"] in {i["item_id"] for i in body["items"]}:
            app_client.post("/feedback", json={"event_id": body["event_id"], "item_id": target["item_id"],
                                               "reward": 5.0})
    assert service.learner.learned > 0
    after = app_client.post("/recommend", json={**request, "event_id": "after"}).get_json()
    scores = {i["item_id"]: i["score"] for i in after["items"]}
    assert scores[target["item_id"]] > target["score"] + 1.0
    assert scores[target["item_id"]] == max(scores.values())  # scores do not depend on exploration


def test_a_retry_after_the_wait_of_a_recorded_reward_is_acknowledged(build, open_service):
    service = open_service(build(feedback={"reward_wait_s": 1.0}))
    client = create_app(deps=service).test_client()
    body = client.post("/recommend", json={"user_id": "u1", "k": 1}).get_json()
    reward = {"event_id": body["event_id"], "item_id": body["items"][0]["item_id"], "reward": 1}
    assert client.post("/feedback", json=reward).get_json()["duplicate"] is False
    decision_key = service.store.key("dec", "{" + body["event_id"] + "}")
    raw = json.loads(service.store.client.get(decision_key))
    raw["ts"] -= 5.0
    service.store.client.set(decision_key, json.dumps(raw))
    assert client.post("/feedback", json=reward).get_json() == {"status": "accepted", "duplicate": True}


def test_feedback_after_the_reward_wait_is_410(build, open_service):
    service = open_service(build(feedback={"reward_wait_s": 1.0}))
    client = create_app(deps=service).test_client()
    body = client.post("/recommend", json={"user_id": "u1", "k": 1}).get_json()
    decision_key = service.store.key("dec", "{" + body["event_id"] + "}")
    raw = json.loads(service.store.client.get(decision_key))
    raw["ts"] -= 5.0  # the decision was made 5 s ago
    service.store.client.set(decision_key, json.dumps(raw))
    response = client.post("/feedback", json={"event_id": body["event_id"], "item_id": body["items"][0]["item_id"],
                                               "reward": 1})
    assert _error(response, 410)["message"].endswith("rewards are accepted for 1 s")


def test_new_item_is_recommendable_right_after_put(build, open_service):
    service = open_service(build(retrieval={"n_candidates": 20, "fresh_candidates": 5, "popular_candidates": 0,
                                            "quality_candidates": 0}))  # 25 candidates, k = 25: all shown
    client = create_app(deps=service).test_client()
    response = client.put("/items/brand-new", json={"category": "shoes", "title": "trail runner",
                                                    "attributes": {"brand": "Acme"}})
    assert response.status_code == 200 and response.get_json()["created"] is True
    for user in ("u1", "nobody-yet"):  # personalised (fresh buffer) and cold start (newest items)
        body = client.post("/recommend", json={"user_id": user, "k": 25}).get_json()
        new = [i for i in body["items"] if i["item_id"] == "brand-new"]
        assert new and new[0]["fresh"] is True, (user, body["strategy"])


def test_out_of_stock_upsert_hides_an_item_at_once(build, open_service):
    service = open_service(build(retrieval={"n_candidates": 20}))
    client = create_app(deps=service).test_client()
    shown = client.post("/recommend", json={"user_id": "u2", "k": 20}).get_json()["items"]
    victim = shown[0]["item_id"]
    assert client.put(f"/items/{victim}", json={"category": "x", "in_stock": False}).get_json()["created"] is False
    for _ in range(5):
        items = client.post("/recommend", json={"user_id": "u2", "k": 20}).get_json()["items"]
        assert victim not in {i["item_id"] for i in items}


def test_service_starts_with_an_empty_catalog(tmp_path, open_service):
    service = open_service(make_config(tmp_path))
    client = create_app(deps=service).test_client()
    empty = client.post("/recommend", json={"user_id": "u1", "k": 3})
    assert empty.status_code == 200 and empty.get_json()["items"] == []
    for n in range(3):
        assert client.put(f"/items/n{n}", json={"category": "books", "title": f"novel {n}"}).status_code == 200
    body = client.post("/recommend", json={"user_id": "u1", "k": 2}).get_json()
    assert body["strategy"] == "cold_start"
    assert len(body["items"]) == 2 and {i["item_id"] for i in body["items"]} <= {"n0", "n1", "n2"}
    reward = {"event_id": body["event_id"], "item_id": body["items"][0]["item_id"], "reward": 1}
    assert client.post("/feedback", json=reward).status_code == 200
    assert client.get("/health").get_json()["items"] == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_slate_answer_with_a_number_that_is_not_finite_is_refused_not_sent_as_null(bad):
    """/recommend's answer is written by orjson, which would write NaN as null: it is refused
    as every other answer is (a 500), and a finite one reads as the standard library wrote it."""
    from web.body import as_json, slate_json

    item = {"item_id": "é1", "position": 1, "score": 0.25, "probability": 0.5, "explored": False, "fresh": True}
    answer = {"event_id": "e", "model_version": 3, "arm": "treatment", "strategy": "personal", "items": [item]}
    assert json.loads(slate_json(answer).get_data()) == json.loads(as_json(answer).get_data()) == answer
    for field in ("score", "probability"):
        with pytest.raises(ValueError):
            slate_json({**answer, "items": [item, {**item, field: bad}]})
