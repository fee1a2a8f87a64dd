"""Logging: one JSON object per line (`server.log_format = "json"`, the default when serving),
and the event_id of the request being handled on every line logged while handling it.

    bind_event(event_id)   # in a request handler, as soon as the event_id is known
    setup("json")          # once per process
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("banditrec_event_id", default=None)


def bind_event(event_id: str | None) -> None:
    """Tag every log line of the current request (thread / context) with `event_id`."""
    _event_id.set(event_id)


class EventIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.event_id = _event_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                "pid": record.process}
        event_id = getattr(record, "event_id", None)
        if event_id:
            line["event_id"] = event_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(fmt: str = "text", level: int = logging.INFO, stream=None) -> logging.Handler:
    """Send the root logger's records to stderr (or `stream`) as JSON lines or text, each with
    the event_id; returns the handler."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(EventIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
