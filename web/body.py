"""Request bodies in, JSON out: the body is application/json, valid UTF-8 text, finite numbers
of sane size; every answer is JSON without NaN."""

from __future__ import annotations

import json
import math

from flask import Response, current_app, request
from werkzeug.exceptions import UnsupportedMediaType

from banditrec import fastjson
from banditrec.errors import InvalidRequest


def service():
    """The service this app serves (`create_app` put it in the app's extensions)."""
    return current_app.extensions["banditrec"]


def body():
    """The request's JSON body: application/json, valid UTF-8 text, finite numbers of sane size."""
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json")
    raw = request.get_data(cache=False)
    try:
        parsed = json.loads(raw, parse_constant=_reject_constant, parse_int=_int)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if b"\\u" in raw:  # escapes can spell lone surrogates, which are not text
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("body contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)") from None
    return parsed


def as_json(payload, status: int = 200) -> Response:
    """`payload` as the answer; a NaN or infinity in it is refused (ValueError: a 500), never sent."""
    return Response(json.dumps(payload, ensure_ascii=False, allow_nan=False), status=status,
                    mimetype="application/json")


def slate_json(answer: dict) -> Response:
    """A /recommend answer, written by orjson (`banditrec.fastjson`: ~10x faster than `as_json`
    on a slate of 50), refused as `as_json` refuses it when a number in it is not finite (orjson
    would write null). Only the items' scores and probabilities can be; with `explain`, `as_json`."""
    items = answer["items"]
    if any("explain" in item for item in items):
        return as_json(answer)
    if not all(math.isfinite(item["score"]) and math.isfinite(item["probability"]) for item in items):
        raise ValueError("a score or probability of the answer is not a finite number")
    return Response(fastjson.dumps(answer), mimetype="application/json")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 15:  # beyond 2**53 a JSON number is not exact in most clients
        raise InvalidRequest(f"body contains the integer {text[:20]}{'...' if len(text) > 20 else ''}, "
                             "which is out of range (|n| < 10**15)")
    return int(text)


def _reject_constant(name: str):
    raise InvalidRequest(f"body contains {name}, which is not valid JSON (numbers must be finite)")
