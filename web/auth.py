"""The API key: with `server.api_key` set, routes that change the catalog or users need
`Authorization: Bearer <key>` (or `X-API-Key: <key>`); without it they are open."""

from __future__ import annotations

import functools
import hmac

from flask import request

from banditrec.errors import Unauthorized
from web.body import service


def admin_only(view):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        expected = service().config.server.api_key.encode()
        if expected:
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("X-API-Key", "")
            if not hmac.compare_digest(given.strip().encode(), expected):
                raise Unauthorized("this route needs the API key: send `Authorization: Bearer <key>`"
                                   if not given else "the API key is wrong")
        return view(*args, **kwargs)

    return guarded
