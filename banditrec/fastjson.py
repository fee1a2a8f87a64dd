"""JSON on the request path: what the service writes and reads back itself (decisions, the
decision log, the exposure log, a user's recent events) and the /recommend answer
(`web.body.slate_json`, which refuses a non-finite number as every answer does), with orjson.

A /recommend at k = 50 encoded its answer (~6.5 KB), its decision (~6.6 KB with the items'
action features) and its log entry (~4.3 KB) with the standard library in ~300 us, ~6 % of
the request's CPU at 1M items; orjson does the same in a tenth of that. What differs from
`json.dumps`: compact separators, bytes instead of str, NaN and infinities written as null
(the standard library wrote the tokens NaN/Infinity, which are not JSON; the answers refused
them), numpy scalars and non-str dict keys accepted. `loads` reads what either wrote: text
the strict parser refuses (NaN tokens of records written before) goes to the standard library.
Request bodies are still parsed by the standard library (`web.body`: its hooks check numbers).
"""

from __future__ import annotations

import json

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(value) -> bytes:
    """`value` as compact UTF-8 JSON.

    >>> dumps({"item_id": "é", "p": 0.25, "sims": [None, float("nan")], 3: (1, 2)})
    b'{"item_id":"\\xc3\\xa9","p":0.25,"sims":[null,null],"3":[1,2]}'
    """
    return orjson.dumps(value, option=_OPTIONS)


def loads(raw: bytes | str):
    """Parsed JSON, also of the records the standard library wrote (NaN tokens and all).

    >>> loads(b'{"a": [1, 2.5]}'), loads('{"p": NaN}')["p"] != loads('{"p": NaN}')["p"]
    ({'a': [1, 2.5]}, True)
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
