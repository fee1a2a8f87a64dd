"""Issue #8's security and bad-input requirements on a real Redis: admin routes need the API
key when one is set; hostile inputs get a clear JSON 4xx and leave nothing behind."""

from __future__ import annotations

import pytest

from app import create_app
from banditrec.config import load_config
from banditrec.errors import ConfigError

KEY = "k3y-for-tests-0123456789"


@pytest.fixture
def keyed(build, open_service):
    service = open_service(build(server={"api_key": KEY}))
    return service, create_app(deps=service).test_client()


ADMIN = [("PUT", "/items/new-1", {"category": "books"}), ("DELETE", "/items/i1", None),
         ("PUT", "/users/u1", {"location": "DE"}), ("POST", "/admin/rebuild", None)]


@pytest.mark.parametrize("method,path,body", ADMIN)
def test_admin_routes_need_the_key_when_one_is_set(keyed, method, path, body):
    service, client = keyed
    items_before = len(service.catalog)
    for headers, message in (({}, "this route needs the API key"), ({"Authorization": "Bearer wrong-key-wrong-key"},
                                                                    "the API key is wrong"),
                             ({"X-API-Key": KEY[:-1]}, "the API key is wrong"),
                             ({"Authorization": KEY}, "this route needs the API key")):  # no "Bearer "
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"] == {"code": "unauthorized", "message": response.get_json()["error"][
            "message"]} and response.get_json()["error"]["message"].startswith(message)
    assert len(service.catalog) == items_before and "new-1" not in service.catalog.row_of  # nothing changed
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code in (200, 404), response.get_json()  # 404: i1 deleted by the first try


def test_request_routes_do_not_need_the_key(keyed):
    _, client = keyed
    body = client.post("/recommend", json={"user_id": "u1", "k": 2}).get_json()
    assert len(body["items"]) == 2
    assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": body["items"][0]["item_id"],
                                          "reward": 1}).status_code == 200
    assert client.post("/events", json={"user_id": "u1", "item_id": "i1", "type": "view"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_without_a_key_admin_routes_are_open(app_client):
    assert app_client.put("/items/open-1", json={"category": "books"}).status_code == 200


def test_api_key_comes_from_the_environment_and_is_validated():
    assert load_config(env={"BANDITREC_API_KEY": KEY}).server.api_key == KEY
    assert KEY not in repr(load_config(env={"BANDITREC_API_KEY": KEY}))
    with pytest.raises(ConfigError, match="at least 16 printable characters"):
        load_config(env={"BANDITREC_API_KEY": "short"})


def _fingerprint(store) -> dict:
    """Every key of this test's prefix with its serialised value: any write shows up."""
    keys = sorted(store.client.scan_iter(match=f"{store.prefix}:*", count=1000))
    return {k: store.client.dump(k) for k in keys}


def _bad_inputs(event_id: str, slate_item: str) -> list[tuple[str, str, object, int]]:
    """(method, path, body, status): a body that is bytes is sent as is, anything else as JSON."""
    deep = b"[" * 50_000 + b"]" * 50_000
    ok_feedback = {"event_id": event_id, "item_id": slate_item}
    return [
        ("POST", "/recommend", {"user_id": 17}, 400),                                          # wrong type
        ("POST", "/recommend", {"user_id": "u1", "k": "10"}, 400),
        ("POST", "/recommend", b'{"user_id": "u1", "k": NaN}', 400),                          # NaN
        ("POST", "/recommend", b'{"user_id": "u1", "context": {"t": Infinity}}', 400),        # Infinity
        ("POST", "/recommend", b'{"user_id": "u1", "context": {"t": -1e999}}', 400),          # overflows to -inf
        ("POST", "/recommend", {"user_id": "u1", "k": 10 ** 9}, 400),                         # huge k
        ("POST", "/recommend", {"user_id": "u1", "k": 0}, 400),
        ("POST", "/recommend", b'{"user_id": "u1", "pad": "' + b"x" * 10_000_000 + b'"}', 413),  # 10 MB body
        ("POST", "/recommend", deep, 400),                                                    # deep JSON
        ("POST", "/recommend", {"user_id": "x" * 10_000}, 400),                               # 10,000-char id
        ("POST", "/recommend", {"user_id": "ab\u0000c"}, 400),                                # control character
        ("POST", "/recommend", b'{"user_id": "\\ud83d"}', 400),                              # lone surrogate
        ("POST", "/recommend", b'{"user_id": "\xc3\x28"}', 400),                             # invalid UTF-8
        ("POST", "/recommend", {}, 400),                                                      # missing field
        ("POST", "/recommend", {"user_id": "u1", "event_id": "../../etc/passwd"}, 400),
        # no VW args from requests
        ("POST", "/recommend", {"user_id": "u1", "vw_args": "--save_resume -f /tmp/x"}, 400),
        # a form body labelled JSON
        ("POST", "/recommend", b"user_id=u1", 400),
        ("POST", "/feedback", {**ok_feedback, "reward": -5}, 400),                            # reward below range
        ("POST", "/feedback", {**ok_feedback, "reward": 1e6}, 400),                           # above range
        ("POST", "/feedback", b'{"event_id": "e", "item_id": "i", "reward": NaN}', 400),
        ("POST", "/feedback", {**ok_feedback}, 400),                                          # missing reward
        ("POST", "/feedback", {"event_id": event_id, "item_id": "not-in-slate", "reward": 1}, 400),  # outside slate
        ("POST", "/feedback", {"event_id": event_id, "seen": ["not-in-slate"]}, 400),
        ("POST", "/feedback", {"event_id": "forged-" + event_id[:20], "item_id": slate_item, "reward": 1}, 404),
        ("POST", "/feedback", {"event_id": "e" * 129, "item_id": slate_item, "reward": 1}, 400),
        ("POST", "/feedback", {"event_id": event_id, "item_id": slate_item, "reward": True}, 400),
        ("POST", "/feedback", [ok_feedback], 400),                                            # a list, not an object
        ("POST", "/events", {"user_id": "u1", "item_id": "i1", "type": "teleport"}, 400),
        ("POST", "/events", {"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": -1}, 400),
        ("POST", "/events", {"user_id": "u1", "item_id": "i1", "type": "view", "value": "9"}, 400),
        ("POST", "/events", {"user_id": "u1", "type": "view"}, 400),
        ("PUT", "/items/i-bad", {"published_at": 1e300}, 400),
        ("PUT", "/items/i-bad", {"attributes": {"a": [1, 2]}}, 400),
        ("PUT", "/items/i-bad", {"item_id": "other"}, 400),
        ("PUT", "/items/" + "x" * 10_000, {"category": "c"}, 400),
        ("PUT", "/users/u1", {"age_group": 42}, 400),
        ("PUT", "/users/u1", {"password": "hunter2"}, 400),
        ("GET", "/recommend", None, 405),
        ("POST", "/nope", {"user_id": "u1"}, 404),
    ]


def test_hand_picked_bad_inputs_get_a_clear_json_4xx_and_store_nothing(app_client, store):
    body = app_client.post("/recommend", json={"user_id": "u1", "k": 3}).get_json()
    event_id, slate_item = body["event_id"], body["items"][0]["item_id"]
    assert app_client.post("/feedback", json={"event_id": event_id, "item_id": slate_item,
                                              "reward": 1}).status_code == 200
    service = app_client.application.extensions["banditrec"]
    before, learned, items = _fingerprint(store), service.learner.learned, len(service.catalog)
    cases = _bad_inputs(event_id, slate_item)
    assert len(cases) >= 30
    for method, path, payload, status in cases:
        kwargs = {"data": payload, "content_type": "application/json"} if isinstance(payload, bytes) \
            else {"json": payload} if payload is not None else {}
        response = app_client.open(path, method=method, **kwargs)
        assert response.status_code == status, (method, path, str(payload)[:80], response.get_data(as_text=True)[:300])
        error = response.get_json()["error"]
        assert set(error) == {"code", "message"} and error["message"], (path, error)
    # the same reward again is a retry: acknowledged as a duplicate, not stored or learned twice
    again = app_client.post("/feedback", json={"event_id": event_id, "item_id": slate_item, "reward": 1})
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert _fingerprint(store) == before, "a rejected request changed what Redis holds"
    assert service.learner.learned == learned and len(service.catalog) == items


READ_KEY = "r3ad-only-key-0123456789"
READERS = ["/dashboard", "/stats", "/experiments"]


@pytest.fixture
def two_keys(build, open_service):
    service = open_service(build(server={"api_key": KEY, "read_key": READ_KEY}))
    return service, create_app(deps=service).test_client()


def _basic(password: str) -> dict:
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()}


@pytest.mark.parametrize("path", READERS)
def test_read_only_routes_need_either_key_and_ask_a_browser_for_it(two_keys, path):
    _, client = two_keys
    for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key"}, _basic("wrong-key-wrong-key"),
                    {"Authorization": "Basic !!not-base64!!"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Basic")  # a browser prompts for the key
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": READ_KEY}, _basic(READ_KEY), _basic(KEY)):
        assert client.get(path, headers=headers).status_code == 200, headers


def test_the_read_key_opens_no_admin_route(two_keys):
    service, client = two_keys
    for headers in ({"Authorization": f"Bearer {READ_KEY}"}, _basic(READ_KEY)):
        response = client.put("/items/new-2", json={"category": "books"}, headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "new-2" not in service.catalog.row_of


@pytest.mark.parametrize("path", READERS)
def test_read_only_routes_are_open_without_an_api_key(app_client, path):
    assert app_client.get(path).status_code == 200


def test_a_read_key_alone_or_a_short_one_is_refused():
    with pytest.raises(ConfigError, match="set server.api_key too"):
        load_config(env={"BANDITREC_READ_KEY": READ_KEY})
    with pytest.raises(ConfigError, match="server.read_key must be at least 16"):
        load_config(env={"BANDITREC_API_KEY": KEY, "BANDITREC_READ_KEY": "short"})
