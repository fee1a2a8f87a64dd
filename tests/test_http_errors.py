"""Every error a client can receive over real HTTP is the API's JSON, through gunicorn as
`banditrec serve` runs it, not only through Flask's test client: errors gunicorn answers
before Flask sees the request (a request line too long) and a body too large sent whole,
without `Expect: 100-continue`, as urllib and requests send it."""

from __future__ import annotations

import http.client
import json
import socket

import pytest
from test_degraded import _free_port
from test_faults import Deployment
from test_security import _bad_inputs


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("http-errors"))
    port = _free_port()
    proc = deployment.start("serve", "--port", str(port), "--workers", "1", wait_port=port)
    yield port
    deployment.kill(proc)
    deployment.close()


def _send(port: int, method: str, path: str, payload) -> tuple[int, dict | None, str]:
    """(status, JSON body or None, content type), the body sent whole (no Expect header)."""
    body = payload if isinstance(payload, bytes) else None if payload is None else json.dumps(payload).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw, kind = response.read(), response.getheader("Content-Type", "")
        try:
            return response.status, json.loads(raw), kind
        except ValueError:
            return response.status, None, kind
    finally:
        conn.close()


def test_the_bad_input_table_over_real_http(served):
    status, body, _ = _send(served, "POST", "/recommend", {"user_id": "u1", "k": 3})
    assert status == 200, body
    event_id, slate_item = body["event_id"], body["items"][0]["item_id"]
    for method, path, payload, want in _bad_inputs(event_id, slate_item):
        status, error, kind = _send(served, method, path, payload)
        if len(path) > 8190:  # beyond gunicorn's longest request line: its 414, in JSON
            want = 414
        assert status == want, (method, path[:60], str(payload)[:60], status, error)
        assert kind.startswith("application/json") and set(error["error"]) == {"code", "message"}, (path[:60], kind)


@pytest.mark.parametrize("length,status", [(5_000, 400), (9_000, 414)])
def test_a_long_request_line_gets_json(served, length, status):
    """Up to gunicorn's largest request line (8190 bytes) the app's own validation answers;
    beyond it gunicorn does, in the API's JSON too."""
    got, error, kind = _send(served, "PUT", "/items/" + "x" * length, {"category": "c"})
    assert got == status and kind.startswith("application/json"), (got, kind)
    assert error["error"]["code"] and error["error"]["message"]


def test_a_bad_request_line_gets_json(served):
    with socket.create_connection(("127.0.0.1", served), timeout=30) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head.lower(), head
    assert json.loads(body)["error"]["code"] == "invalid_request"
