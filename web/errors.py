"""Every error is JSON: `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import logging

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from banditrec.errors import BanditrecError
from web.body import as_json

log = logging.getLogger("banditrec.http")

DRAIN_BYTES = 64 * 1024 * 1024  # a body too large is read and discarded up to this, so the client sees the 413

_HTTP_CODES = {500: "internal", 400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def register(app: Flask, max_body_bytes: int) -> None:
    @app.errorhandler(BanditrecError)
    def handle_error(exc: BanditrecError):
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        response = as_json(exc.to_json(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="banditrec", charset="UTF-8"' \
                if getattr(exc, "basic", False) else 'Bearer realm="banditrec admin"'
        return response

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        if exc.code == 413:
            _drain(request.environ)
        code = _HTTP_CODES.get(exc.code, "http_error")
        message = {413: f"request body is larger than {max_body_bytes} bytes",
                   404: f"no route {request.method} {request.path}",
                   405: f"method {request.method} is not allowed on {request.path}"}.get(exc.code, exc.description)
        response = as_json({"error": {"code": code, "message": message}}, exc.code)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return as_json({"error": {"code": "internal", "message": "internal error"}}, 500)


def _drain(environ: dict) -> None:
    """Read and discard what is left of a body too large (up to `DRAIN_BYTES`). Clients that
    send a body whole, without `Expect: 100-continue` (urllib, requests), read the answer only
    once they have sent it: were the connection closed first (gunicorn drains 64 KiB, then
    closes), they would see a broken pipe instead of the 413."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    left = DRAIN_BYTES
    try:
        while left > 0:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):  # the client went away: nothing left to answer
        return
