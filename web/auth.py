"""The API keys: with `server.api_key` set, routes that change the catalog or users need it,
and the read-only operations routes (dashboard, stats, experiments) need it or
`server.read_key`; without it every route is open. A key is sent as `Authorization: Bearer
<key>`, `X-API-Key: <key>`, or (browsers, for the dashboard) HTTP Basic auth with the key as
the password."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac

from flask import request

from banditrec.errors import Unauthorized
from web.body import service


def admin_only(view):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        server = service().config.server
        _check([server.api_key])
        return view(*args, **kwargs)

    return guarded


def readers_only(view):
    """The API key or the read key; a browser without either is asked for it (HTTP Basic)."""
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        server = service().config.server
        _check([server.api_key, server.read_key], basic=True)
        return view(*args, **kwargs)

    return guarded


def _check(keys: list[str], basic: bool = False) -> None:
    expected = [k.encode() for k in keys if k]
    if not expected:
        return
    given = _given()
    if not any(hmac.compare_digest(given.strip().encode(), key) for key in expected):
        raise Unauthorized("this route needs the API key: send `Authorization: Bearer <key>`"
                           if not given else "the API key is wrong", basic=basic)


def _given() -> str:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:]
    if auth[:6].lower() == "basic ":
        try:
            return base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return request.headers.get("X-API-Key", "")
