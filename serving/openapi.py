"""The OpenAPI 3.0 document served at `GET /openapi.json`: the HTTP contract (README, "The HTTP API").

Built from the config, so the bounds it states (`k <= server.max_k`, the reward range) are
the ones the service enforces. `tests/test_openapi.py` runs schemathesis over it: every
response must match what is written here, and no input may produce a 5xx.
"""

from __future__ import annotations

from banditrec import __version__
from banditrec.config import EVENT_TYPES, Config
from retrieval.data import MAX_ID_LENGTH, PROFILE_FIELDS
from serving.schema import EVENT_ID, MAX_CONTEXT_KEYS, MAX_EXCLUDE, MAX_PREFERRED

# printable text: no C0/C1 control characters (the service also refuses other non-printable
# code points such as U+2028; the schema states the common case)
_PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]+$"
ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": _PRINTABLE}
EVENT_ID_SCHEMA = {"type": "string", "pattern": f"^{EVENT_ID.pattern}$"}
UNIX_TIME = {"type": "number", "minimum": 0, "exclusiveMaximum": True, "maximum": 1e11}
SCALAR = {"nullable": True, "anyOf": [{"type": "string", "maxLength": 256}, {"type": "number"},
                                      {"type": "boolean"}]}

ERROR = {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
    "error": {"type": "object", "required": ["code", "message"], "additionalProperties": False,
              "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}

_ERRORS = {"400": "the body or a parameter is invalid; the message names the field",
           "401": "a guarded route without a configured key (admin routes: the API key; the dashboard, stats "
                  "and experiments: it or the read key)",
           "404": "unknown event, item or route (a path id with a line break matches no route)",
           "405": "method not allowed on this path",
           "409": "the event_id was already used (/recommend), or another attempt at the same event is under "
                  "way (/events)",
           "410": "the reward came after feedback.reward_wait_s",
           "413": "the body is larger than server.max_body_bytes",
           "415": "the body is not application/json", "503": "Redis could not record it; retry"}


def _errors(*codes: str) -> dict:
    return {code: {"description": _ERRORS[code], "content": {"application/json": {"schema": {"$ref":
                                                                                             "#/components/schemas/Error"}}}}
            for code in codes}


def _ok(schema: dict, description: str = "success") -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _obj(properties: dict, required=(), extra: bool = False) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = list(required)
    return schema


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


READERS = [{"bearer": []}, {"apiKey": []}, {"basic": []}]  # the API key or the read key (Basic: as the password)


def _op(summary: str, responses: dict, *, body: dict | None = None, admin: bool = False,
        params: tuple = ()) -> dict:
    op = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = _body(body)
    if params:
        op["parameters"] = list(params)
    if admin:
        op["security"] = [{"bearer": []}, {"apiKey": []}]
    return op


def _path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def document(config: Config) -> dict:
    """The OpenAPI document for a service running `config`."""
    fb = config.feedback
    body_errors = ("400", "413", "415")
    recommend_item = _obj({
        "item_id": {"type": "string"}, "position": {"type": "integer", "minimum": 1},
        "score": {"type": "number", "nullable": True}, "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "explored": {"type": "boolean"}, "fresh": {"type": "boolean"},
        "explain": {"type": "array", "items": _obj({"feature": {"type": "string"}, "contribution": {"type": "number"}},
                                                   required=("feature", "contribution"))}},
        required=("item_id", "position", "score", "probability", "explored", "fresh"))
    recommend = _op("Rank items for a user; every item carries the probability it was drawn with", {
        **_ok(_obj({"event_id": EVENT_ID_SCHEMA, "model_version": {"type": "integer", "minimum": 0},
                    "arm": {"type": "string"}, "strategy": {"type": "string"},
                    "items": {"type": "array", "items": recommend_item}, "test": {"type": "boolean"}},
                   required=("event_id", "model_version", "arm", "strategy", "items"))),
        **_errors(*body_errors, "409")},
        body=_obj({"user_id": ID,
                   "k": {"type": "integer", "minimum": 1, "maximum": config.server.max_k, "default": 10},
                   "context": {"type": "object", "nullable": True, "maxProperties": MAX_CONTEXT_KEYS,
                               "additionalProperties": SCALAR,
                               "propertyNames": {"minLength": 1, "maxLength": 64}},
                   "exclude": {"type": "array", "nullable": True, "maxItems": MAX_EXCLUDE, "items": ID},
                   "event_id": {**EVENT_ID_SCHEMA, "nullable": True},
                   "baseline": {"type": "array", "nullable": True, "maxItems": 1000, "items": ID},
                   "explain": {"type": "boolean", "default": False},
                   "test": {"type": "boolean", "default": False}}, required=("user_id",)))
    feedback = _op("Report a reward for an item of a decision (recorded durably before the 200)", {
        **_ok({"oneOf": [_obj({"status": {"type": "string", "enum": ["accepted"]}, "duplicate": {"type": "boolean"},
                               "test": {"type": "boolean"}}, required=("status", "duplicate")),
                         _obj({"status": {"type": "string", "enum": ["accepted"]}, "seen": {"type": "integer"},
                               "test": {"type": "boolean"}}, required=("status", "seen"))]}),
        **_errors(*body_errors, "404", "410", "503")},
        body={"anyOf": [
            _obj({"event_id": EVENT_ID_SCHEMA, "item_id": ID,
                  "reward": {"type": "number", "minimum": fb.reward_min, "maximum": fb.reward_max},
                  "seen": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": ID}},
                 required=("event_id", "item_id", "reward")),
            _obj({"event_id": EVENT_ID_SCHEMA, "seen": {"type": "array", "minItems": 1, "maxItems": 10_000,
                                                        "items": ID}}, required=("event_id", "seen"))]})
    event = _op("Record an interaction not tied to a decision; updates the user's real-time state", {
        **_ok(_obj({"status": {"type": "string", "enum": ["recorded"]}, "item_known": {"type": "boolean"},
                    "event_id": EVENT_ID_SCHEMA, "duplicate": {"type": "boolean"}},
                   required=("status", "item_known"))),
        **_errors(*body_errors, "409", "503")},
        body=_obj({"user_id": ID, "item_id": ID, "type": {"type": "string", "enum": list(EVENT_TYPES)},
                   "event_id": {**EVENT_ID_SCHEMA, "nullable": True},
                   "timestamp": {**UNIX_TIME, "nullable": True},
                   "value": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1e9}},
                  required=("user_id", "item_id", "type")))
    attributes = {"type": "object", "nullable": True, "maxProperties": 64,
                  "propertyNames": {"maxLength": 64}, "additionalProperties": SCALAR}
    item = _obj({"item_id": ID, "category": {"type": "string", "nullable": True, "maxLength": 256},
                 "title": {"type": "string", "nullable": True, "maxLength": 1024},
                 "description": {"type": "string", "nullable": True, "maxLength": 20_000},
                 "attributes": attributes, "in_stock": {"type": "boolean", "default": True},
                 "published_at": {**UNIX_TIME, "nullable": True}})
    changed = {"item_id": {"type": "string"}, "catalog_cursor": {"type": "string"}}
    admin_errors = ("401", "503")
    put_item = _op("Add or replace an item; recommendable on the next request", {
        **_ok(_obj({**changed, "created": {"type": "boolean"}}, required=("item_id", "created", "catalog_cursor"))),
        **_errors(*body_errors, "404", *admin_errors)}, body=item, admin=True, params=(_path_id("item_id"),))
    delete_item = _op("Remove an item from answers at once", {
        **_ok(_obj({**changed, "deleted": {"type": "boolean"}}, required=("item_id", "deleted", "catalog_cursor"))),
        **_errors("400", "404", *admin_errors)}, admin=True, params=(_path_id("item_id"),))
    profile = _obj({f: {"type": "string", "maxLength": 64, "nullable": True} for f in PROFILE_FIELDS})
    preferred = {"type": "array", "nullable": True, "maxItems": MAX_PREFERRED, "items": ID}
    preferences = {**_obj({"liked_categories": {"type": "array", "nullable": True, "maxItems": MAX_PREFERRED,
                                                "items": {"type": "string", "minLength": 1, "maxLength": 256}},
                           "liked_items": preferred, "disliked_items": preferred}), "nullable": True}
    put_user = _op("Replace a user's profile (demographic segment for cold start) and onboarding preferences", {
        **_ok(_obj({"user_id": {"type": "string"},
                    "profile": {"type": "object", "additionalProperties": {"type": "string"}},
                    "preferences": {"type": "object"}},
                   required=("user_id", "profile"))),
        **_errors(*body_errors, "404", *admin_errors)},
        body=_obj({"user_id": ID, **profile["properties"], "preferences": preferences}), admin=True,
        params=(_path_id("user_id"),))
    rebuild = _op("Fold catalog changes into a new index version and serve it", {
        **_ok(_obj({"rebuilt": {"type": "boolean"}, "index_version": {"type": "string", "nullable": True}},
                   required=("rebuilt", "index_version"), extra=True)),
        **_errors(*admin_errors)}, admin=True)
    learning = _op("Is it learning: mode, strategy, model version, counts", _ok(_obj({
        "mode": {"type": "string"}, "strategy": {"type": "string"},
        "exploration_from": {"type": "string", "description": "\"file\", or \"canary <id>\" when a canary's "
                             "exploration was promoted"}, "pid": {"type": "integer"},
        "model_version": {"type": "integer"},
        "learned_total": {"type": "integer"}, "learned_here": {"type": "integer"},
        "dead_letters": {"type": "integer", "nullable": True, "description": "rewards that could not be learned"},
        "waiting": _obj({"decisions": {"type": "integer", "nullable": True},
                         "next_learned_in_s": {"type": "number", "nullable": True},
                         "reward_wait_s": {"type": "number"}}),
        "apprentice": _obj({"decisions": {"type": "integer"}, "matches": {"type": "integer"},
                            "match_rate": {"type": "number", "nullable": True}})}, extra=True)))
    health = _op("Alive", _ok(_obj({"status": {"type": "string"}, "model_version": {"type": "integer"},
                                    "items": {"type": "integer"}, "pid": {"type": "integer"}},
                                   required=("status",), extra=True)))
    ready_body = _obj({"ready": {"type": "boolean"}, "redis": {"type": "boolean"}}, required=("ready",), extra=True)
    ready = _op("Ready: model and index loaded, Redis reachable", {
        **_ok(ready_body),
        "503": {"description": "not ready", "content": {"application/json": {"schema": ready_body}}}})
    lift = {"type": "object", "nullable": True, "required": ["lift", "ci95", "p_value"], "properties": {
        "lift": {"type": "number"}, "ci95": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                             "maxItems": 2}, "p_value": {"type": "number", "nullable": True}}}
    arm = {"type": "object", "additionalProperties": {"type": "number", "nullable": True}}
    canary = {**_obj({
        "id": {"type": "string"}, "kind": {"type": "string", "enum": ["model", "exploration"]},
        "version": {"type": "integer", "description": "the canary's model, or (kind exploration) the model "
                    "version when it started"},
        "exploration": {"type": "object", "nullable": True, "description": "kind exploration: the [exploration] "
                        "section it tries"},
        "candidate": {"type": "string"}, "share": {"type": "number"},
        "status": {"type": "string", "enum": ["running", "promoting", "promote_failed", "promoted", "aborted"]},
        "arms": _obj({"canary": arm, "current": arm}, required=("canary", "current")),
        "lift": {"type": "object", "additionalProperties": lift},
        "verdict": {"type": "string", "nullable": True, "enum": ["promote", "abort", "wait", None]}},
        required=("id", "kind", "version", "share", "status", "arms", "lift", "verdict"), extra=True),
        "nullable": True}
    experiments = _op("The A/B holdout: per-arm counts and rates, and the lift with 95 % intervals; the last "
                      "canary against the current model (null if none was started)", {
        **_ok(_obj({"experiment": {"type": "string"}, "holdout_share": {"type": "number"},
                    "arms": _obj({"personalized": arm, "holdout": arm}, required=("personalized", "holdout")),
                    "lift": {"type": "object", "additionalProperties": lift}, "canary": canary},
                   required=("experiment", "holdout_share", "arms", "lift", "canary"), extra=True)),
        **_errors("401", "503")})
    experiments["security"] = READERS
    spec = _op("This document", _ok({"type": "object"}))
    stats = _op("What the dashboard shows: per-arm totals and shares, latency percentiles, learning", {
        **_ok(_obj({"arms": {"type": "object"}, "recommend_latency_ms": {"type": "object"},
                    "requests": {"type": "integer"}}, required=("arms", "recommend_latency_ms"), extra=True)),
        **_errors("401")})
    stats["security"] = READERS
    page = {"summary": "The live dashboard (HTML)", "responses": {"200": {"description": "the page", "content": {
        "text/html": {"schema": {"type": "string"}}}}, **_errors("401")}, "security": READERS}
    prometheus = {"summary": "Prometheus metrics (text exposition format)", "responses": {"200": {
        "description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "banditrec", "version": __version__,
                 "description": "Personalized recommendations that explore on purpose and learn from rewards."},
        "paths": {
            "/recommend": {"post": recommend}, "/feedback": {"post": feedback}, "/events": {"post": event},
            "/items/{item_id}": {"put": put_item, "delete": delete_item}, "/users/{user_id}": {"put": put_user},
            "/admin/rebuild": {"post": rebuild}, "/learning": {"get": learning}, "/health": {"get": health},
            "/ready": {"get": ready}, "/experiments": {"get": experiments}, "/openapi.json": {"get": spec},
            "/stats": {"get": stats}, "/dashboard": {"get": page}, "/metrics": {"get": prometheus}},
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                "basic": {"type": "http", "scheme": "basic"}}},
    }
